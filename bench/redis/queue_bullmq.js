// The durable-queue benchmark, BullMQ side (same roles and output as queue.lua):
//   node queue_bullmq.js produce PORT N [RATE] | consume PORT N
// Jobs are removed when completed (as corio's ack removes them); the worker runs 50 at a time;
// latency is put -> 'completed' (after BullMQ moved the job to completed).
const { Queue, Worker } = require('bullmq');
const [mode, port, n, rate] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]),
                               process.argv[5] ? Number(process.argv[5]) : null];
const connection = { host: '127.0.0.1', port };
const now = () => Number(process.hrtime.bigint()) / 1e9;
const CONCURRENCY = 50;
const opts = { removeOnComplete: true, removeOnFail: true };

async function produce() {
  const q = new Queue('bench', { connection });
  await q.waitUntilReady();
  const t0 = now();
  console.log(`start ${t0.toFixed(6)}`);
  if (!rate) {
    let next = 0;
    const loop = async () => { while (next < n) { next++; await q.add('j', { t: now() }, opts); } };
    const ls = []; for (let k = 0; k < CONCURRENCY; k++) ls.push(loop());
    await Promise.all(ls);
  } else {
    let sent = 0; const inflight = [];
    while (sent < n) {
      const due = Math.min(n, Math.floor((now() - t0) * rate) + 1);
      while (sent < due) { sent++; inflight.push(q.add('j', { t: now() }, opts)); }
      await new Promise(r => setTimeout(r, 1));
    }
    await Promise.all(inflight);
  }
  await q.close();
}

async function consume() {
  const lat = []; let done = 0;
  let finish; const all = new Promise(r => { finish = r; });
  const w = new Worker('bench', async () => {}, { connection, concurrency: CONCURRENCY });
  w.on('completed', (job) => {
    lat.push(now() - job.data.t);
    if (++done === n) finish();
  });
  await all;
  const tEnd = now();
  lat.sort((a, b) => a - b);
  const pct = (p) => (lat[Math.ceil(lat.length * p) - 1] * 1e3).toFixed(2);
  console.log(`end ${tEnd.toFixed(6)} p50 ${pct(0.5)} p99 ${pct(0.99)}`);
  await w.close(true);
  process.exit(0);
}

(mode === 'produce' ? produce() : consume()).catch((e) => { console.error(e); process.exit(1); });
