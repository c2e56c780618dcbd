// Bulk transfer, Node: server PORT | client PORT MIB (MiB/s on stdout).
const net = require('net');
const [mode, port, mib] = process.argv.slice(2);
if (mode === 'server') {
  net.createServer((s) => {
    let n = 0;
    s.on('data', (d) => { n += d.length; });
    s.on('end', () => { s.end(String(n)); });
  }).listen(+port, '127.0.0.1', () => console.log('ready'));
} else {
  const chunk = Buffer.alloc(65536, 'b');
  const c = net.connect(+port, '127.0.0.1', () => {
    const t0 = process.hrtime.bigint();
    let left = +mib * 16;
    const pump = () => {
      while (left > 0) { left--; if (!c.write(chunk)) { c.once('drain', pump); return; } }
      c.end();
    };
    c.on('data', (d) => {
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      if (+d.toString() !== +mib * 1048576) throw new Error('short: ' + d);
      console.log((+mib / secs).toFixed(0));
      c.destroy();
    });
    pump();
  });
}
