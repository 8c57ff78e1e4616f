// Parse LogQL expressions with Grafana's LogQL grammar (@grafana/lezer-logql, Apache-2.0, the
// parser Grafana's own Loki query editor uses) and report any that do not parse.
// Input on stdin: a JSON array of {"where": string, "expr": string}. Exit 1 if any fails.
// Installed with its package-lock.json into build/logql-check by tools/install-cos-checkers.
import { parser } from "@grafana/lezer-logql";

const input = JSON.parse(await new Promise((resolve) => {
  let data = "";
  process.stdin.on("data", (chunk) => (data += chunk));
  process.stdin.on("end", () => resolve(data));
}));

let failed = 0;
for (const { where, expr } of input) {
  const tree = parser.parse(expr);
  const errors = [];
  tree.iterate({
    enter(node) {
      if (node.type.isError) errors.push(node.from);
    },
  });
  if (errors.length) {
    failed += 1;
    const at = errors[0];
    console.log(`FAILED ${where}: parse error at ${at}: ${JSON.stringify(expr.slice(at, at + 40))}`);
  } else {
    console.log(`OK ${where}`);
  }
}
console.log(`${input.length - failed} of ${input.length} LogQL expressions parse`);
process.exit(failed ? 1 : 0);
