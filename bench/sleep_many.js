const N = Number(process.argv[2] || 100000);
const t0 = process.hrtime.bigint();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const tasks = [];
  for (let i = 0; i < N; i++) tasks.push((async () => { await sleep(1000); })());
  await Promise.all(tasks);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const rss = process.resourceUsage().maxRSS;
  console.log(`node ${N} tasks sleeping 1 s: ${wall.toFixed(3)} s wall, peak RSS ${(rss / 1024).toFixed(1)} MiB, ${(rss * 1024 / N).toFixed(0)} bytes/task`);
})();
