// Uploads one file to a tus endpoint with tus-js-client, the way a browser or Node app
// would, in small chunks. Prints {"file_id", "offset", "patches", "heads"} as JSON on
// stdout; exits 1 with the client's error on stderr. Used by Chronicle's integration
// tests (tests/integration/tus/js_client.rs).
//
// usage: node upload.mjs <endpoint> <access token> <file> <chunk size>
import fs from 'node:fs';
import path from 'node:path';
import * as tus from 'tus-js-client';

const [endpoint, token, file, chunkSize] = process.argv.slice(2);
if (!endpoint || !token || !file || !chunkSize) {
  console.error('usage: node upload.mjs <endpoint> <access token> <file> <chunk size>');
  process.exit(2);
}

const counts = { PATCH: 0, HEAD: 0 };
const bytes = fs.readFileSync(file);
const upload = new tus.Upload(bytes, {
  endpoint,
  chunkSize: Number(chunkSize),
  headers: { Authorization: `Bearer ${token}` },
  metadata: { filename: path.basename(file), filetype: 'application/octet-stream' },
  // No retries: a refused request (429 included) must fail the test, not be papered over.
  retryDelays: null,
  onBeforeRequest(req) {
    const method = req.getMethod();
    if (method in counts) counts[method] += 1;
  },
  onError(err) {
    console.error(`upload failed: ${err}`);
    process.exit(1);
  },
  onSuccess({ lastResponse }) {
    console.log(JSON.stringify({
      file_id: lastResponse.getHeader('Chronicle-File-Id'),
      offset: Number(lastResponse.getHeader('Upload-Offset')),
      patches: counts.PATCH,
      heads: counts.HEAD,
    }));
  },
});
upload.start();
