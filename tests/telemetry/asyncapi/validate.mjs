// Validate an AsyncAPI document with the official parser; print its diagnostics as JSON.
// Usage: node validate.mjs FILE  (exit 0 when valid, 1 when the parser reports errors)
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const text = readFileSync(process.argv[2], "utf8");
const parser = new Parser();
const { document, diagnostics } = await parser.parse(text);
const levels = ["error", "warning", "info", "hint"];
const report = diagnostics.map((d) => ({
  level: levels[d.severity] ?? String(d.severity),
  code: d.code,
  message: d.message,
  path: d.path.join("/"),
}));
console.log(
  JSON.stringify({
    valid: document !== undefined && !report.some((d) => d.level === "error"),
    version: document?.version() ?? null,
    channels: document ? document.channels().all().map((c) => c.id()) : [],
    diagnostics: report,
  }),
);
process.exit(document === undefined ? 1 : 0);
