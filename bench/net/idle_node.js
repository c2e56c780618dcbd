// Idle connections, Node server: server PORT.
require('net').createServer((s) => { s.on('error', () => {}); })
  .listen(+process.argv[3], '127.0.0.1', 4096, () => console.log('ready'));
