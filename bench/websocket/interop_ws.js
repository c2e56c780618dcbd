// bench/websocket/interop.sh's Node side. `node interop_ws.js client URL`: connects with the
// `ws` package (permessage-deflate offered), sends text (ASCII, UTF-8, 1 MiB) and binary
// messages, checks each echo byte for byte, closes with 1000 and prints "ok". `node
// interop_ws.js server PORT`: an echo server with permessage-deflate on, printing "ready".
const WebSocket = require('ws');
const [mode, where] = process.argv.slice(2);

function fail(msg) { console.error('interop_ws: ' + msg); process.exit(1); }

if (mode === 'server') {
  const wss = new WebSocket.WebSocketServer({ host: '127.0.0.1', port: +where,
                                               perMessageDeflate: true });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  wss.on('listening', () => console.log('ready'));
} else {
  const big = 'x'.repeat(1 << 20);
  const bin = Buffer.alloc(70000);
  for (let i = 0; i < bin.length; i++) bin[i] = (i * 7) & 255;
  const sent = [['hello', false], ['héllo wörld ✓', false], [big, false], [bin, true],
                [Buffer.alloc(0), true]];
  const ws = new WebSocket(where, { perMessageDeflate: true });
  let i = 0;
  ws.on('open', () => {
    if (!ws.extensions.includes('permessage-deflate')) fail('no permessage-deflate: ' + ws.extensions);
    for (const [data, binary] of sent) ws.send(data, { binary });
  });
  ws.on('message', (data, isBinary) => {
    const [want, binary] = sent[i++];
    if (isBinary !== binary) fail(`message ${i}: binary ${isBinary}, want ${binary}`);
    if (!Buffer.from(want).equals(data)) fail(`message ${i}: ${data.length} bytes differ`);
    if (i === sent.length) ws.close(1000, 'done');
  });
  ws.on('close', (code) => {
    if (i !== sent.length) fail(`closed (${code}) after ${i} echoes`);
    if (code !== 1000) fail(`close code ${code}`);
    console.log('ok');
  });
  ws.on('error', (e) => fail(e.message));
}
