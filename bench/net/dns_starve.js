// Node's side of bench/net/dns_starve.sh: fs.promises.readFile of DIR/1..10000, 64 at a time,
// alone and while LOOKUPS dns.lookup calls of names nobody answers are in flight; and how long
// a lookup of "localhost" waited meanwhile.
const fs = require("fs/promises"), dns = require("dns");
const dir = process.argv[2], lookups = +process.argv[3] || 64, N = 10000, J = 64;
const now = () => Number(process.hrtime.bigint()) / 1e9;
async function readAll() {
  const t0 = now();
  let next = 1;
  async function worker() {
    while (next <= N) {
      const b = await fs.readFile(`${dir}/${next++}`);
      if (b.length !== 4096) throw new Error("short read");
    }
  }
  await Promise.all(Array.from({ length: J }, worker));
  return N / (now() - t0);
}
(async () => {
  await readAll();
  const alone = await readAll();
  const t0 = now();
  let slowest = 0;
  const pending = [];
  for (let i = 1; i <= lookups; i++)
    pending.push(dns.promises.lookup(`slow-${i}-${Date.now()}.corio-bench.invalid`)
      .catch(() => {}).finally(() => { slowest = Math.max(slowest, now() - t0); }));
  await new Promise((r) => setTimeout(r, 50));
  const t1 = now();
  let localWait;
  const quick = dns.promises.lookup("localhost").then(() => { localWait = now() - t1; });
  const busy = await readAll();
  const during = now() - t0;
  await Promise.all(pending);
  await quick;
  console.log(`${alone.toFixed(0)} ${busy.toFixed(0)} ${during.toFixed(2)} ` +
              `${localWait.toFixed(2)} ${slowest.toFixed(2)}`);
})();
