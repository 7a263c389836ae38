// node check_vectors.js vectors.json results.json -- results: {"<id>": {"param": [...], "m": [...], "u": [...]}}
const fs = require("fs");
const SPECIAL = { inf: Infinity, "-inf": -Infinity, nan: NaN };
const hex = /^(-?)0x([01])\.?([0-9a-f]*)p([+-]\d+)$/;  // float.hex(): sign, lead digit, fraction, exponent
const num = (s) => typeof s === "number" ? s : s in SPECIAL ? SPECIAL[s]
  : ((x) => (x[1] ? -1 : 1) * parseInt(x[2] + x[3], 16) * 2 ** (x[4] - 4 * x[3].length))(hex.exec(s));
const ok = (got, want, tol) => Object.is(got, want) || (tol > 0 && Math.abs(got - want) <= tol);  // NaN is NaN, -0 is not 0
const [doc, results] = process.argv.slice(2, 4).map((f) => JSON.parse(fs.readFileSync(f, "utf8")));
const failed = new Set();
for (const v of doc.vectors) for (const k of ["m", "u", "param"]) v.expected[k].forEach((e, i) => {
  const tol = k === "param" ? num(v.tolerance.param_abs[i]) : 0;
  if (!ok(num(results[v.id][k][i]), num(e), tol)) { failed.add(v.id); console.log(`FAIL ${v.id}: ${k}[${i}]`); }
});
console.log(`${doc.vectors.length - failed.size} of ${doc.vectors.length} vectors conform`);
process.exit(failed.size ? 1 : 0);
