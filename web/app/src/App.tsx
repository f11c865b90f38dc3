import { CityClient, tokenClaims } from "@daarion/city-client";
import { usePresenceHeartbeat } from "@daarion/city-client/react";
import { useEffect, useMemo, useRef, useState } from "react";
import { signOut, takeToken } from "./auth";
import { CityHome } from "./pages/CityHome";
import { RoomPage } from "./pages/RoomPage";
import { RoomsPage } from "./pages/RoomsPage";
import { SecondMePage } from "./pages/SecondMePage";
import { href, useRoute, type Route } from "./router";

export function App() {
  const [token, setToken] = useState<string | null>(() => takeToken());
  if (!token) return <SignedOut />;
  return (
    <SignedIn
      token={token}
      onSignOut={() => {
        signOut();
        setToken(null);
      }}
    />
  );
}

function SignedIn({ token, onSignOut }: { token: string; onSignOut: () => void }) {
  const client = useMemo(() => new CityClient({ token }), [token]);
  const route = useRoute();
  const [expired, setExpired] = useState(false);
  // One heartbeat for the whole tab, whatever page is shown.
  const presence = usePresenceHeartbeat({ token, onUnauthorized: () => setExpired(true) });
  const name = tokenClaims(token).name ?? client.userId;
  const main = useRef<HTMLElement>(null);
  useEffect(() => main.current?.focus(), [route]);

  return (
    <div className="layout">
      <a className="skip" href="#main" onClick={(e) => (e.preventDefault(), main.current?.focus())}>
        Skip to content
      </a>
      <header className="topbar">
        <a className="brand" href="#/">
          DAARION City
        </a>
        <nav aria-label="Main">
          <NavLink route={{ page: "home" }} current={route} label="City Home" />
          <NavLink route={{ page: "rooms" }} current={route} label="Rooms" />
          <NavLink route={{ page: "secondme" }} current={route} label="Second Me" />
        </nav>
        <div className="me">
          <span className={`dot dot--${presence.status}`} aria-hidden="true" />
          <span>
            {name} · <span data-testid="presence-status">{presence.status}</span>
          </span>
          <button type="button" className="link" onClick={onSignOut}>
            Sign out
          </button>
        </div>
      </header>
      {(expired || presence.unauthorized) && (
        <p role="alert" className="banner banner--error">
          Your session has expired. Open the app again with a fresh link (make dev prints one).
        </p>
      )}
      {presence.error && !presence.unauthorized && (
        <p role="status" className="banner">
          Presence: {presence.error.message} — retrying.
        </p>
      )}
      <main id="main" ref={main} tabIndex={-1}>
        <Page route={route} client={client} />
      </main>
    </div>
  );
}

function Page({ route, client }: { route: Route; client: CityClient }) {
  switch (route.page) {
    case "rooms":
      return <RoomsPage client={client} />;
    case "room":
      return <RoomPage client={client} roomId={route.roomId} />;
    case "secondme":
      return <SecondMePage client={client} />;
    default:
      return <CityHome client={client} />;
  }
}

function NavLink({ route, current, label }: { route: Route; current: Route; label: string }) {
  const active = route.page === current.page || (route.page === "rooms" && current.page === "room");
  return (
    <a href={href(route)} aria-current={active ? "page" : undefined}>
      {label}
    </a>
  );
}

function SignedOut() {
  return (
    <main className="signed-out">
      <h1>DAARION City</h1>
      <p>
        You are not signed in. Open the link that <code>make dev</code> prints (it ends in{" "}
        <code>#token=…</code>), or add <code>#token=&lt;your JWT&gt;</code> to this address.
      </p>
    </main>
  );
}
