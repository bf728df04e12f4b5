import assert from "node:assert/strict";
import { test } from "node:test";

import { slug } from "../src/slug.js";

test("words become dash-separated lowercase", () => {
  assert.equal(slug("Hello, World!"), "hello-world");
});

test("accents are dropped", () => {
  assert.equal(slug("Crème brûlée"), "creme-brulee");
});
