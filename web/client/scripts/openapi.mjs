// Regenerate (write) or verify (check) src/openapi.json and src/openapi.ts from the
// gateway's Python app. `check` fails when either committed file is stale, so a
// changed API cannot ship with old client types.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import openapiTS, { astToString } from "openapi-typescript";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, "..");
const repo = resolve(pkg, "../..");
const jsonPath = resolve(pkg, "src/openapi.json");
const tsPath = resolve(pkg, "src/openapi.ts");
const mode = process.argv[2] ?? "check";

const python = process.env.PYTHON ?? resolve(repo, ".venv/bin/python");
if (!existsSync(python)) {
  console.error(`openapi: ${python} not found (run \`make venv\` first, or set PYTHON)`);
  process.exit(2);
}
const json = execFileSync(python, [resolve(here, "dump_openapi.py")], {
  cwd: repo,
  encoding: "utf8",
  env: { ...process.env, PYTHONPATH: repo },
});
const header =
  "// Generated from the gateway's /openapi.json by `npm run openapi` (web/client/scripts/openapi.mjs).\n" +
  "// Do not edit; `npm run openapi:check` (run by `make test`) fails when it is stale.\n\n";
const ts = header + astToString(await openapiTS(JSON.parse(json)));

if (mode === "write") {
  writeFileSync(jsonPath, json);
  writeFileSync(tsPath, ts);
  console.log("openapi: wrote src/openapi.json and src/openapi.ts");
} else {
  const stale = [
    [jsonPath, json],
    [tsPath, ts],
  ].filter(([path, text]) => !existsSync(path) || readFileSync(path, "utf8") !== text);
  if (stale.length) {
    console.error(
      "openapi: stale generated files: " +
        stale.map(([p]) => p).join(", ") +
        "\n  the gateway's API changed; run `cd web && npm run openapi` and commit the result",
    );
    process.exit(1);
  }
  console.log("openapi: src/openapi.json and src/openapi.ts are current");
}
