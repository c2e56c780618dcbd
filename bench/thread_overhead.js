// Node worker_threads with a message round trip: N trivial calls, 64 in flight, one worker per
// core (as corio's default pool).
const { Worker } = require('worker_threads');
const os = require('os');
const N = +process.argv[2] || 100000, INFLIGHT = 64;
const W = os.availableParallelism ? os.availableParallelism() : os.cpus().length;
const src = `const { parentPort } = require('worker_threads');
parentPort.on('message', (m) => parentPort.postMessage(m));`;
const workers = [];
let sent = 0, done = 0, t0;
function send(w) { sent++; w.postMessage(sent); }
let ready = 0;
for (let i = 0; i < W; i++) {
  const w = new Worker(src, { eval: true });
  w.on('message', () => {
    done++;
    if (sent < N) send(w);
    else if (done === N) {
      const dt = Number(process.hrtime.bigint() - t0) / 1e9;
      console.log(`node worker_threads ${Math.floor(N / dt)} calls/s`);
      process.exit(0);
    }
  });
  w.on('online', () => {
    if (++ready === W) {
      t0 = process.hrtime.bigint();
      for (let k = 0; k < INFLIGHT; k++) send(workers[k % W]);
    }
  });
  workers.push(w);
}
