// ioredis with enableAutoPipelining: 50 async loops doing SET/GET; prints ops/s.
const Redis = require('ioredis');
const [port, secs] = [Number(process.argv[2]), Number(process.argv[3])];
const r = new Redis({port, enableAutoPipelining: true});
let n = 0, stop = false;
async function worker(i) { const k = 'key:' + i; while (!stop) { await r.set(k, 'xxx'); await r.get(k); n += 2; } }
(async () => {
  const ws = []; for (let i = 0; i < 50; i++) ws.push(worker(i));
  const t0 = process.hrtime.bigint();
  await new Promise(res => setTimeout(res, secs * 1000)); stop = true;
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  await Promise.all(ws); console.log((n / dt).toFixed(0)); r.disconnect();
})();
