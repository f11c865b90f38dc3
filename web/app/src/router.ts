import { useEffect, useState } from "react";

export type Route =
  | { page: "home" }
  | { page: "rooms" }
  | { page: "room"; roomId: string }
  | { page: "secondme" };

/** Hash routes (#/, #/rooms, #/rooms/<id>, #/secondme): the app works from any URL. */
export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, "");
  const room = /^\/rooms\/([^/]+)$/.exec(path);
  if (room) return { page: "room", roomId: decodeURIComponent(room[1]!) };
  if (path === "/rooms") return { page: "rooms" };
  if (path === "/secondme") return { page: "secondme" };
  return { page: "home" };
}

export function href(route: Route): string {
  switch (route.page) {
    case "room":
      return `#/rooms/${encodeURIComponent(route.roomId)}`;
    case "rooms":
      return "#/rooms";
    case "secondme":
      return "#/secondme";
    default:
      return "#/";
  }
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const onHash = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);
  return route;
}
