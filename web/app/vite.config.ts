import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// Served by the gateway at /app/ (gateway/http/webapp.py). `npm run dev` proxies the
// API to a gateway on :8080 (override with CITY_GATEWAY_URL).
const gateway = process.env.CITY_GATEWAY_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  base: "/app/",
  plugins: [react()],
  build: { outDir: "dist", sourcemap: true, target: "es2020" },
  server: {
    proxy: {
      "/city": gateway,
      "/secondme": gateway,
      "/internal": gateway,
      "/ws": { target: gateway.replace(/^http/, "ws"), ws: true },
    },
  },
});
