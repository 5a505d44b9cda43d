/**
 * The per-build secret: what the receiver accepts as a relay's bearer token.
 * An absent header or an empty token never matches, whatever the receiver was
 * given; the command line refuses empty and short secrets before that
 * (tests/cli_usage_error_test.ts).
 */

import assert from "node:assert/strict";
import { authorizationHeader, authorizationMatches, generateToken } from "../src/protocol/mod.ts";
import { MIN_TOKEN_BYTES } from "../src/protocol/mod.ts";

const SECRET = "auth-test-secret-value";

Deno.test("the relay's own header matches its secret, and any other does not", () => {
  assert.equal(authorizationMatches(authorizationHeader(SECRET), SECRET), true);
  assert.equal(authorizationMatches(authorizationHeader(`${SECRET}x`), SECRET), false);
  assert.equal(authorizationMatches(`Basic ${SECRET}`, SECRET), false);
  assert.equal(authorizationMatches(SECRET, SECRET), false);
});

Deno.test("a request without an Authorization header never matches, even an empty secret", () => {
  assert.equal(authorizationMatches(null, SECRET), false);
  assert.equal(authorizationMatches(null, ""), false);
});

Deno.test("an empty bearer token never matches, even an empty secret", () => {
  assert.equal(authorizationMatches("Bearer ", ""), false);
  assert.equal(authorizationMatches("", ""), false);
  assert.equal(authorizationMatches(authorizationHeader(""), ""), false);
});

Deno.test("a generated secret is long enough for the command line to accept", () => {
  const token = generateToken();
  assert.ok(new TextEncoder().encode(token).byteLength >= MIN_TOKEN_BYTES, token);
  assert.notEqual(generateToken(), token);
});
