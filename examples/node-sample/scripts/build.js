// Build: copy src/ to dist/ with a banner, the way a bundler would emit it.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

mkdirSync("dist", { recursive: true });
for (const name of readdirSync("src")) {
  const text = readFileSync(join("src", name), "utf8");
  writeFileSync(join("dist", name), `// sample-slug 0.1.0\n${text}`);
  console.log(`built dist/${name}`);
}
