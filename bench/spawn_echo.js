// 1,000 runs of `/bin/echo x` with captured stdout, 8 at a time (execFile). Prints runs/s.
const { execFile } = require("child_process");
const N = +process.argv[2] || 1000, J = +process.argv[3] || 8;
let started = 0, done = 0;
const t0 = process.hrtime.bigint();
function next() {
  if (started >= N) return;
  started++;
  execFile("/bin/echo", ["x"], (err, out) => {
    if (err || out !== "x\n") throw err || new Error(out);
    if (++done === N) console.log((N / (Number(process.hrtime.bigint() - t0) / 1e9)).toFixed(0));
    else next();
  });
}
for (let i = 0; i < J; i++) next();
