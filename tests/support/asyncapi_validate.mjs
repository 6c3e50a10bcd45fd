// Validate an AsyncAPI document with @asyncapi/parser (the parser the AsyncAPI CLI uses):
// `node asyncapi_validate.mjs FILE` prints the diagnostics as JSON lines and exits 1
// when any is an error (severity 0).
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const file = process.argv[2];
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"), { source: file });
for (const d of diagnostics) {
  console.log(JSON.stringify({ severity: d.severity, code: d.code, path: d.path, message: d.message }));
}
const errors = diagnostics.filter((d) => d.severity === 0);
process.exit(document === undefined || errors.length > 0 ? 1 : 0);
