// TCP echo, Node's net: server PORT | client PORT CONNS SECONDS.
const net = require('net');
const [mode, port, conns, secs] = process.argv.slice(2);
if (mode === 'server') {
  net.createServer((s) => { s.on('data', (d) => s.write(d)); s.on('error', () => {}); })
    .listen(+port, '127.0.0.1', 1024, () => console.log('ready'));
} else {
  const msg = Buffer.alloc(64, 'm');
  let count = 0, stop = false;
  for (let i = 0; i < +conns; i++) {
    const c = net.connect(+port, '127.0.0.1', () => c.write(msg));
    let got = 0;
    c.on('data', (d) => {
      got += d.length;
      while (got >= 64) { got -= 64; count++; if (stop) { c.destroy(); return; } c.write(msg); }
    });
    c.on('error', () => {});
  }
  setTimeout(() => { const n = count; stop = true; console.log((n / +secs).toFixed(0)); process.exit(0); }, +secs * 1000);
}
