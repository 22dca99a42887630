// The baseline for bench/run_stream.sh: the official Node SDKs' long-connection
// clients doing what cardgate does in the same run — answer every card click
// with a fixed answer — against bench_stream_gateway.
//   node node_stream_client.mjs lark|dingtalk BASE_URL [N]
// N > 1: open N clients and print {"connections":N,"rss_before_kib",...} once
// all are connected (memory per connection), then stay up.
import { createRequire } from 'node:module';

// Resolve packages as tests/interop does (their "exports" maps included).
const require = createRequire(new URL('../tests/interop/package.json', import.meta.url));
const [mode, base, nArg] = process.argv.slice(2);
const n = Number(nArg || 1);
const rss = () => Math.round(process.memoryUsage().rss / 1024);
const card = { config: { wide_screen_mode: true }, elements: [{ tag: 'div', text: { tag: 'lark_md', content: '已完成' } }] };
let connected = 0;
const rss0 = rss();
const report = () => {
  if (++connected === n && n > 1) {
    const r = rss();
    console.log(JSON.stringify({ connections: n, rss_before_kib: rss0, rss_after_kib: r,
      per_connection_kib: Math.round(((r - rss0) / n) * 10) / 10 }));
  }
};

if (mode === 'lark') {
  const lark = require('@larksuiteoapi/node-sdk');
  const dispatcher = new lark.EventDispatcher({ loggerLevel: lark.LoggerLevel.error }).register({
    'card.action.trigger': async () => ({ card: { type: 'raw', data: card } }),
  });
  for (let i = 0; i < n; i++) {
    const ws = new lark.WSClient({ appId: 'cli_a1b2c3d4e5f60718', appSecret: 'bench_secret', domain: base,
      loggerLevel: lark.LoggerLevel.error });
    ws.start({ eventDispatcher: dispatcher }).then(() => setTimeout(report, 200));
  }
} else {
  // The SDK's open-connection URL is a constant: point it at the gateway.
  const axios = require('axios');
  axios.interceptors.request.use((cfg) => {
    cfg.url = cfg.url.replace('https://api.dingtalk.com', base);
    return cfg;
  });
  const { DWClient, TOPIC_CARD } = require('dingtalk-stream');
  for (let i = 0; i < n; i++) {
    const c = new DWClient({ clientId: 'ding_bench', clientSecret: 'bench_secret', debug: false });
    // The SDK hands over `data` as a string: like any card handler (and
    // like cardgate's route), read which button was clicked before answering.
    c.registerCallbackListener(TOPIC_CARD, (res) => {
      const data = JSON.parse(res.data);
      const params = JSON.parse(data.content).cardPrivateData.params || {};
      const answer = params.button_type === 'public_publish'
        ? { cardData: { cardParamMap: {} }, cardUpdateOptions: { updateCardDataByKey: true } } : {};
      c.socketCallBackResponse(res.headers.messageId, answer);
    });
    c.connect().then(() => setTimeout(report, 200));
  }
}
