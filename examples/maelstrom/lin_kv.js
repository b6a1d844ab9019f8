#!/usr/bin/env node
// A linearizable Maelstrom lin-kv node in JavaScript (node, no packages): the same
// design as lin_kv.py, so splitbrain is shown testing a node it did not start in Python.
//
//   splitbrain run --db maelstrom --bin "node examples/maelstrom/lin_kv.js" \
//       --nodes 3 --nemesis partition,loss,reorder --time-limit 10
//
// The first node of node_ids is the only leader; other nodes forward client requests
// to it. The leader answers a batch of requests only once a majority (itself
// included) has accepted the whole new state as version [epoch, seq]. A restarted
// leader takes a new epoch (wall-clock ns, above any earlier incarnation's) and adopts
// the newest version of a majority of "prepare" answers before serving. Followers
// accept only newer versions from epochs at least the one they promised.
//
// --stale-reads makes it deliberately broken: followers answer reads from their own
// copy, which a partition leaves behind (the checker must call the run invalid).
"use strict";

const RETRY_MS = 100;
const staleReads = process.argv.includes("--stale-reads");

let me = "";
let ids = [];
let nextMsgId = 0;
let kv = {};
let version = [0n, 0n];
let promised = 0n;
let epoch = 0n;
let ready = false;
let prepared = new Map();
let queue = [];
let round = null; // {requests, replies, kv}
let seq = 0n;
let acks = new Set();
let lastSend = 0;

function cmp(a, b) {
  if (a[0] !== b[0]) return a[0] < b[0] ? -1 : 1;
  if (a[1] !== b[1]) return a[1] < b[1] ? -1 : 1;
  return 0;
}

// Epochs are ns timestamps (beyond 2^53): they travel as strings, compared as BigInt.
function send(dest, body) {
  nextMsgId += 1;
  process.stdout.write(JSON.stringify({ src: me, dest, body: { ...body, msg_id: nextMsgId } }) + "\n");
}

function reply(request, body) {
  send(request.src, { ...body, in_reply_to: request.body.msg_id });
}

const leader = () => ids[0];
const majority = () => Math.floor(ids.length / 2) + 1;

function broadcast(body) {
  lastSend = Date.now();
  for (const node of ids) if (node !== me) send(node, body);
}

function acceptMessage() {
  return { type: "accept", epoch: epoch.toString(), seq: seq.toString(), kv: round.kv };
}

function answerLocally(request) {
  const key = JSON.stringify(request.body.key);
  if (key in kv) reply(request, { type: "read_ok", value: kv[key] });
  else reply(request, { type: "error", code: 20, text: "key does not exist" });
}

function maybeStartRound() {
  if (!ready || round !== null || queue.length === 0) return;
  const requests = queue;
  queue = [];
  const next = { ...kv };
  const replies = requests.map((request) => {
    const body = request.body;
    const key = JSON.stringify(body.key);
    if (body.type === "read") {
      return key in next ? { type: "read_ok", value: next[key] }
        : { type: "error", code: 20, text: "key does not exist" };
    }
    if (body.type === "write") {
      next[key] = body.value;
      return { type: "write_ok" };
    }
    if (!(key in next)) return { type: "error", code: 20, text: "key does not exist" };
    if (JSON.stringify(next[key]) !== JSON.stringify(body.from)) {
      return { type: "error", code: 22, text: `value is ${JSON.stringify(next[key])}` };
    }
    next[key] = body.to;
    return { type: "cas_ok" };
  });
  seq += 1n;
  round = { requests, replies, kv: next };
  version = [epoch, seq];
  kv = next;
  acks = new Set([me]);
  broadcast(acceptMessage());
  if (acks.size >= majority()) finishRound();
}

function finishRound() {
  round.requests.forEach((request, i) => reply(request, round.replies[i]));
  round = null;
  maybeStartRound();
}

function handle(message) {
  const body = message.body;
  switch (body.type) {
    case "init":
      me = body.node_id;
      ids = body.node_ids;
      reply(message, { type: "init_ok" });
      if (me === leader()) {
        epoch = BigInt(Date.now()) * 1000000n + BigInt(process.hrtime()[1] % 1000000);
        promised = epoch;
        prepared = new Map([[me, [version, kv]]]);
        broadcast({ type: "prepare", epoch: epoch.toString() });
      }
      break;
    case "read":
    case "write":
    case "cas":
      if (body.type === "read" && staleReads && me !== leader()) answerLocally(message);
      else if (me === leader()) {
        queue.push(message);
        maybeStartRound();
      } else send(leader(), { type: "forward", request: message });
      break;
    case "forward":
      if (me === leader()) {
        queue.push(body.request);
        maybeStartRound();
      }
      break;
    case "prepare": {
      const e = BigInt(body.epoch);
      if (e >= promised) {
        promised = e;
        reply(message, { type: "prepare_ok", epoch: body.epoch,
          version: version.map(String), kv });
      }
      break;
    }
    case "prepare_ok":
      if (me === leader() && !ready && BigInt(body.epoch) === epoch) {
        prepared.set(message.src, [body.version.map(BigInt), body.kv]);
        if (prepared.size >= majority()) {
          let best = null;
          for (const entry of prepared.values()) if (best === null || cmp(entry[0], best[0]) > 0) best = entry;
          [version, kv] = best;
          ready = true;
          process.stderr.write(`${me} leads epoch ${epoch} from version ${version}\n`);
          maybeStartRound();
        }
      }
      break;
    case "accept": {
      const v = [BigInt(body.epoch), BigInt(body.seq)];
      if (v[0] >= promised && cmp(v, version) >= 0) {
        promised = v[0];
        version = v;
        kv = body.kv;
        reply(message, { type: "accept_ok", epoch: body.epoch, seq: body.seq });
      }
      break;
    }
    case "accept_ok":
      if (round !== null && BigInt(body.epoch) === epoch && BigInt(body.seq) === seq) {
        acks.add(message.src);
        if (acks.size >= majority()) finishRound();
      }
      break;
    default:
      break;
  }
}

setInterval(() => {
  if (me !== leader() || Date.now() - lastSend < RETRY_MS) return;
  if (!ready) broadcast({ type: "prepare", epoch: epoch.toString() });
  else if (round !== null) broadcast(acceptMessage());
}, RETRY_MS / 2);

let buffer = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  buffer += chunk;
  let newline;
  while ((newline = buffer.indexOf("\n")) >= 0) {
    const line = buffer.slice(0, newline);
    buffer = buffer.slice(newline + 1);
    if (line.trim()) handle(JSON.parse(line));
  }
});
process.stdin.on("end", () => process.exit(0));
