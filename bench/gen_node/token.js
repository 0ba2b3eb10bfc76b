"use strict";
// The bearer token of src/roost/auth.py TokenAuthority.issue(user, ttl_s) with a shared secret, byte for byte:
// PyJWT's HS256 JWT, header {"alg":"HS256","typ":"JWT"} (sorted keys), payload {"sub","iat","exp","iss"} in that
// order, compact JSON, base64url without padding. tests/test_bench.py compares it with a token Python issues.
const crypto = require("node:crypto");

const HEADER = Buffer.from('{"alg":"HS256","typ":"JWT"}').toString("base64url");

/**
 * @param {string} secret the server's shared secret
 * @param {string} user the token's subject
 * @param {number} ttlS seconds until it expires
 * @param {number} [now] issue time, whole seconds since the epoch (default: now)
 * @param {string} [issuer] the "iss" claim, as TokenAuthority's default "roost"
 */
function issueToken(secret, user, ttlS, now = Math.floor(Date.now() / 1000), issuer = "roost") {
  const claims = { sub: user, iat: now, exp: now + ttlS };
  if (issuer) claims.iss = issuer;
  const signed = `${HEADER}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;
  const signature = crypto.createHmac("sha256", secret).update(signed).digest("base64url");
  return `${signed}.${signature}`;
}

module.exports = { issueToken };
