// Read 10,000 files of 4 KiB, 64 at a time (fs.promises.readFile). Prints files/s.
const fs = require("fs");
const [dir, N = 10000, J = 64] = [process.argv[2], +process.argv[3] || 10000, +process.argv[4] || 64];
(async () => {
  let next = 1;
  const t0 = process.hrtime.bigint();
  async function worker() {
    while (next <= N) {
      const b = await fs.promises.readFile(`${dir}/${next++}`);
      if (b.length !== 4096) throw new Error("size");
    }
  }
  await Promise.all(Array.from({ length: J }, worker));
  console.log((N / (Number(process.hrtime.bigint() - t0) / 1e9)).toFixed(0));
})();
