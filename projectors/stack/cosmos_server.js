// The local Cosmos REST server (@vercel/cosmosdb-server) with HTTP keep-alive, as Azure Cosmos DB
// answers. The package's command line always sends `connection: close`, so every request of the
// azure-cosmos client paid a new TCP connection on both sides (measured: about half of the client's
// CPU per operation went to connect, close and name lookup). The package's own API takes the option.
// Usage: node cosmos_server.js HOST PORT   (NODE_PATH: the node_modules folder holding the package)
"use strict";
const { createHttpServer } = require("@vercel/cosmosdb-server");

const [host, port] = process.argv.slice(2);
if (!host || !port) {
  console.error("usage: cosmos_server.js HOST PORT");
  process.exit(2);
}
const server = createHttpServer({ keepAlive: true });
// idle connections are kept longer than the client's pool keeps them busy between batches, so a
// request rarely meets a connection the server is closing
server.keepAliveTimeout = 120000;
server.headersTimeout = 125000;
server.listen(Number(port), host, () => {
  const address = server.address();
  console.log(`Ready to accept HTTP connections at ${address.address}:${address.port} (keep-alive)`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => process.exit(0));
}
