// A dependency-free linter: no `var`, no trailing whitespace, files end with a newline.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const problems = [];
for (const dir of ["src", "test", "scripts"]) {
  for (const name of readdirSync(dir)) {
    if (!name.endsWith(".js")) continue;
    const path = join(dir, name);
    const text = readFileSync(path, "utf8");
    text.split("\n").forEach((line, index) => {
      if (/\s+$/.test(line)) problems.push(`${path}:${index + 1}: trailing whitespace`);
      if (/^\s*var\s/.test(line)) problems.push(`${path}:${index + 1}: use let or const, not var`);
    });
    if (!text.endsWith("\n")) problems.push(`${path}: no newline at end of file`);
  }
}
for (const problem of problems) console.log(problem);
console.log(problems.length ? `${problems.length} problem(s)` : "lint: clean");
process.exit(problems.length ? 1 : 0);
