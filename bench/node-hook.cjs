// The same hook in Node.js (for comparison only): sends the StageEvent and,
// for gated actions, waits for the Verdict. Plain CommonJS, no TypeScript
// loader, so it measures Node's own start-up and nothing more.
const { Dealer } = require('zeromq');
const { stagegate } = require('../src/protocol/generated/stagegate.js');
const pb = stagegate.v1;
const env = process.env;
const name = env.CRTOOLS_SCRIPT_ACTION;
const action = pb.Action[name.toUpperCase().replace(/-/g, '_')] ?? 0;
const gated = action === pb.Action.POST_RESTORE || action === pb.Action.PRE_RESUME;
(async () => {
  const d = new Dealer({ linger: gated ? 0 : 250, receiveTimeout: Number(env.STAGEGATE_TIMEOUT ?? 30) * 1000 });
  d.connect(env.STAGEGATE_ENDPOINT);
  const now = BigInt(Date.now()) * 1000000n;
  await d.send(
    pb.Request.encode({
      event: {
        protocolVersion: 1,
        session: env.STAGEGATE_SESSION,
        tree: env.STAGEGATE_TREE,
        action,
        actionName: name,
        initPid: Number(env.CRTOOLS_INIT_PID ?? 0),
        hookPid: process.pid,
        criuPid: process.ppid,
        wallNs: now.toString(),
        monoNs: process.hrtime.bigint().toString(),
        attempt: 1,
        expectedTrees: Number(env.STAGEGATE_TREES),
      },
    }).finish(),
  );
  if (gated) {
    const [frame] = await d.receive();
    process.exitCode = pb.Verdict.decode(frame).decision === pb.Decision.PROCEED ? 0 : 1;
  }
  d.close();
})().catch((e) => {
  console.error(String(e));
  process.exitCode = 1;
});
