#!/usr/bin/env node
// Fan-out over WebSockets with and without permessage-deflate (issue 18): what compression
// costs the server and saves on the wire, per delivered message.
//
//   node scripts/ws-deflate-fanout.js [SUBS] [RATE] [SECONDS]      (defaults 200 100 5)
//
// For each of --ws-deflate off and no-context: a fresh release server (`$CARGO_TARGET_DIR` or
// target, epoll), SUBS WebSockets on /ws/fan from Node's `ws` (which offers permessage-deflate
// by default; the server decides), RATE publishes a second for SECONDS of a 330-byte JSON
// text, each subscriber checking it gets every message once, in order. Node's inflater runs
// on its thread pool and can be the limit: keep SUBS x RATE where deliveries/s keeps up. Prints deliveries/s,
// messages lost, the server's CPU per delivery (/proc/PID/stat) and the bytes each
// subscriber's socket read per delivery (frame headers included, the handshake excluded).
// Needs Node's `ws` (npm install -g ws; .ci/run installs it for tests/ws_deflate.rs).
'use strict';
const { spawn, execSync } = require('child_process');
const fs = require('fs');
const http = require('http');
const net = require('net');
const path = require('path');
module.paths.push(execSync('npm root -g').toString().trim());
const WebSocket = require('ws');

const [SUBS, RATE, SECONDS] = [200, 100, 5].map((d, i) => Number(process.argv[2 + i] || d));
const BIN = path.join(process.env.CARGO_TARGET_DIR || 'target', 'release', 'realtime');
// What a chat or dashboard message looks like: JSON with repeated keys, in the envelope's text.
const TEXT = JSON.stringify({
  type: 'price', symbol: 'EURUSD', bid: 1.08342, ask: 1.08351, venue: 'primary',
  book: [{ price: 1.0834, size: 1000000 }, { price: 1.0833, size: 2500000 }, { price: 1.0832, size: 500000 }],
  note: 'the quick brown fox jumps over the lazy dog',
});
const TICKS = Number(execSync('getconf CLK_TCK').toString());

const cpuTicks = (pid) => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime, stime: fields 14 and 15 of proc(5)
};

const freePort = () => new Promise((resolve) => {
  const server = net.createServer().listen(0, '127.0.0.1', () => {
    const { port } = server.address();
    server.close(() => resolve(port));
  });
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function run(mode) {
  const port = await freePort();
  const server = spawn(BIN, ['serve', '--addr', `127.0.0.1:${port}`, '--ws-deflate', mode, '--keepalive', '3600'],
    { stdio: ['ignore', 'ignore', 'ignore'] });
  await sleep(500);
  const subscribers = await Promise.all(Array.from({ length: SUBS }, () => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/fan`);
    const sub = { ws, next: 0, received: 0, outOfOrder: 0, bytesAtOpen: 0 };
    ws.on('open', () => { sub.bytesAtOpen = ws._socket.bytesRead; resolve(sub); });
    ws.on('message', (data) => {
      const envelope = JSON.parse(data);
      if (envelope.gap) return;
      const number = Number(envelope.text.slice(0, envelope.text.indexOf(' ')));
      if (number !== sub.next) sub.outOfOrder += 1;
      sub.next = number + 1;
      sub.received += 1;
    });
    ws.on('error', reject);
  })));
  const extensions = subscribers[0].ws.extensions;
  // One connection: publishes are answered, and so stored, in the order they are sent.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const publish = (n) => new Promise((resolve) => {
    const body = `${n} ${TEXT}`;
    const request = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/publish/fan', agent,
      headers: { 'Content-Length': Buffer.byteLength(body) } }, (response) => { response.resume(); response.on('end', resolve); });
    request.end(body);
  });
  const cpuBefore = cpuTicks(server.pid);
  const started = process.hrtime.bigint();
  const total = RATE * SECONDS;
  const pending = [];
  for (let n = 0; n < total; n += 1) {
    const due = Number(started) / 1e6 + (n * 1000) / RATE;
    const wait = due - Number(process.hrtime.bigint()) / 1e6;
    if (wait > 0) await sleep(wait);
    pending.push(publish(n));
  }
  await Promise.all(pending);
  const deadline = Date.now() + 10000;
  while (subscribers.some((s) => s.received < total) && Date.now() < deadline) await sleep(20);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpuSeconds = (cpuTicks(server.pid) - cpuBefore) / TICKS;
  const delivered = subscribers.reduce((sum, s) => sum + s.received, 0);
  const wire = subscribers.reduce((sum, s) => sum + s.ws._socket.bytesRead - s.bytesAtOpen, 0);
  const outOfOrder = subscribers.reduce((sum, s) => sum + s.outOfOrder, 0);
  subscribers.forEach((s) => s.ws.terminate());
  agent.destroy();
  server.kill();
  console.log(`| ${mode} | ${extensions || '(none)'} | ${Math.round(delivered / seconds)} | ${SUBS * total - delivered} | ` +
    `${outOfOrder} | ${((cpuSeconds * 1e6) / delivered).toFixed(2)} µs | ${(wire / delivered).toFixed(1)} B |`);
}

(async () => {
  console.log(`${SUBS} WebSocket subscribers, ${RATE} publishes/s for ${SECONDS} s, ${TEXT.length}-byte text`);
  console.log('| --ws-deflate | agreed | deliveries/s | lost | out of order | server CPU per delivery | wire bytes per delivery |');
  console.log('|---|---|---|---|---|---|---|');
  for (const mode of ['off', 'no-context']) await run(mode);
})();
