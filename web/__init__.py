"""The browser page: builds the static site (web.build) and serves it locally (web.serve).

The JavaScript lives beside: charrnn.mjs (the decoding module the page and the Node.js example
share), site/ (the page) and package.json/package-lock.json (the pinned onnxruntime-web)."""
