// An Adamax step in JavaScript speaking the out-of-process protocol of `conform --exec`:
// one JSON case per line on stdin, one JSON answer per line on stdout.
//   adamax-cy conform --exec "node adamax_exec.js" --convention torch --dtype float32
// `--bug NAME` makes it deliberately wrong, to see the harness catch it:
// m, u, theta, late-bias (the bias correction wrong only after t > 100) in the formulas;
// json, id, length, exit, hang in the protocol.
const readline = require("readline");
const bug = process.argv.includes("--bug") ? process.argv[process.argv.indexOf("--bug") + 1] : null;
const SPECIAL = { inf: Infinity, "-inf": -Infinity, nan: NaN };
const hex = /^(-?)0x([01])\.?([0-9a-f]*)p([+-]\d+)$/;
const num = (s) => typeof s === "number" ? s : s in SPECIAL ? SPECIAL[s]
  : ((x) => (x[1] ? -1 : 1) * parseInt(x[2] + x[3], 16) * 2 ** (x[4] - 4 * x[3].length))(hex.exec(s));

// beta1**t rounded once to double, as the contract has it: `**` is not correctly rounded in
// JavaScript (0.99 ** 6 is one ulp off), and 1 - beta1**t magnifies that error. Powers by
// squaring in double-double arithmetic (Dekker's products), rounded at the end.
const split = (a) => { const c = 134217729 * a, hi = c - (c - a); return [hi, a - hi]; };
const twoProd = (a, b) => {
  const p = a * b, [ah, al] = split(a), [bh, bl] = split(b);
  return [p, ((ah * bh - p) + ah * bl + al * bh) + al * bl];
};
const ddMul = ([ah, al], [bh, bl]) => {
  const [p, e] = twoProd(ah, bh), lo = e + (ah * bl + al * bh), s = p + lo;
  return [s, lo - (s - p)];
};
function pow(b, t) {
  let r = [1, 0], x = [b, 0];
  for (; t > 0; t = Math.floor(t / 2)) {
    if (t % 2) r = ddMul(r, x);
    x = ddMul(x, x);
  }
  return r[0] + r[1];
}

function step(c) {
  const r = c.dtype === "float32" ? Math.fround : (x) => x;  // round every operation to the dtype
  const [lr, b1, b2, eps, wd] = [c.lr, c.beta1, c.beta2, c.eps, c.weight_decay].map(num);
  // Coefficients in double, then rounded to the dtype; the kernel's order c * (m_t / d).
  const t = bug === "late-bias" && c.t > 100 ? 100 : c.t;
  const omb1 = r(1 - b1), lrwd = r(lr * wd), coef = r(lr / (1 - pow(b1, bug === "theta" ? t + 1 : t)));
  const out = { id: c.id, param: [], m: [], u: [] };
  c.param.forEach((p, i) => {
    let th = r(num(p)), g = r(num(c.grad[i])), m = r(num(c.m[i])), u = r(num(c.u[i]));
    if (c.maximize) g = -g;
    if (wd !== 0 && !c.decoupled_weight_decay) g = r(g + r(r(wd) * th));
    if (wd !== 0 && c.decoupled_weight_decay) th = r(th - r(lrwd * th));
    const mt = bug === "m" ? r(r(r(b1) * m) + r(g - r(r(b1) * g))) : r(r(r(b1) * m) + r(omb1 * g));
    const a = r(r(b2) * u), b = c.convention === "torch" || bug === "u" ? r(Math.abs(g) + r(eps)) : Math.abs(g);
    const ut = Number.isNaN(a) || a > b ? a : b;
    const d = c.convention === "torch" ? ut : r(ut + r(eps));
    const q = mt === 0 && d === 0 ? mt - mt : r(mt / d);  // eps = 0 and nothing to learn from
    out.param.push(r(th - r(coef * q))); out.m.push(mt); out.u.push(ut);
  });
  return out;
}

let n = 0;
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  n++;
  if (bug === "hang") return;
  if (bug === "exit" && n > 3) process.exit(3);
  const out = step(JSON.parse(line));
  if (bug === "id") out.id = "x" + out.id;
  if (bug === "length") out.u.push(0);
  const text = JSON.stringify(out, (k, v) => typeof v === "number" && !Number.isFinite(v) ? (Number.isNaN(v) ? "nan" : v > 0 ? "inf" : "-inf") : Object.is(v, -0) ? "-0x0.0p+0" : v);
  process.stdout.write((bug === "json" && n > 2 ? text.slice(1) : text) + "\n");
});
