import { describe, expect, it } from "vitest";
import { CityClient } from "../src/client.js";

// A token whose payload is {"sub":"u_me"} (the client only reads claims, never verifies).
const TOKEN = `x.${btoa(JSON.stringify({ sub: "u_me" })).replace(/=+$/, "")}.y`;

function recording(status = 200, body: unknown = {}) {
  const calls: { url: string; method: string; body: unknown }[] = [];
  const fetch = (async (url: string, init: RequestInit) => {
    calls.push({ url, method: init.method ?? "GET", body: init.body ? JSON.parse(String(init.body)) : undefined });
    return new Response(status === 204 ? null : JSON.stringify(body), { status });
  }) as unknown as typeof globalThis.fetch;
  return { calls, client: new CityClient({ token: TOKEN, baseUrl: "https://city.example/", fetch }) };
}

describe("CityClient (SPEC §13 routes)", () => {
  it("puts and deletes reactions with the key percent-encoded", async () => {
    const { calls, client } = recording();
    await client.react("room_city_general", "m_city_1", "👍");
    await client.unreact("room_city_general", "m_city_1", "a/b");
    expect(calls.map((c) => [c.method, c.url])).toEqual([
      ["PUT", "https://city.example/city/rooms/room_city_general/messages/m_city_1/reactions/%F0%9F%91%8D"],
      ["DELETE", "https://city.example/city/rooms/room_city_general/messages/m_city_1/reactions/a%2Fb"],
    ]);
  });

  it("edits with PATCH, deletes (204), lists members", async () => {
    const { calls, client } = recording();
    await client.editMessage("room_city_general", "m_city_1", "fixed");
    expect(calls[0]).toMatchObject({ method: "PATCH", body: { body: "fixed" } });
    const del = recording(204);
    await expect(del.client.deleteMessage("room_city_general", "m_city_1")).resolves.toBeUndefined();
    expect(del.calls[0]!.method).toBe("DELETE");
    await client.members("room_city_general");
    expect(calls[1]!.url).toBe("https://city.example/city/rooms/room_city_general/members");
  });

  it("sends reply_to only when replying", async () => {
    const { calls, client } = recording(201);
    await client.postMessage("room_city_general", "hi", { replyTo: "m_city_0" });
    await client.postMessage("room_city_general", "hi again");
    expect(calls[0]!.body).toMatchObject({ body: "hi", reply_to: "m_city_0" });
    expect(calls[1]!.body).not.toHaveProperty("reply_to");
  });

  it("resolves attachment urls against the gateway", () => {
    const { client } = recording();
    expect(client.resolveUrl("/city/media/hs/abc")).toBe("https://city.example/city/media/hs/abc");
    expect(client.resolveUrl("https://cdn.example/x")).toBe("https://cdn.example/x");
  });
});
