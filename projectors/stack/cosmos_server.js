// The local Cosmos REST server (@vercel/cosmosdb-server), made to answer as Azure Cosmos DB does in
// the ways the projectors depend on. The package is used through its own API; what it does
// differently from Azure is corrected here, in one place:
//
// 1. HTTP keep-alive. The package's command line always sends `connection: close`, so every request
//    of the azure-cosmos client paid a new TCP connection on both sides.
// 2. A query sent with a partition key reads that partition only. The package copies and scans the
//    whole container for every query (measured: a 100-id query 129 ms at 5,000 items, 7.75 s at
//    20,000), where Azure serves a single-partition query from that partition's index. Items are
//    indexed by partition value here, so a partition query costs the size of its partition.
// 3. A conditional patch (`filter_predicate`) is evaluated on the one item it patches, as written,
//    as on Azure; the package lowercased it (so `c.sourceVersion` never matched) and ran it as a
//    query over the whole container.
// 4. Time to live. A container created with `defaultTtl` (-1: on, items never expire unless they
//    carry their own `ttl`; n: after n seconds) deletes expired items, and never returns them; the
//    package stored `ttl` but never expired anything.
// 5. A query over the whole container costs the size of the container, per page. The package's
//    query compiler builds the FROM rows with `reduce(($, c) => [...$, {c}], [])`, which copies the
//    rows gathered so far for every item: a page of a scan of 20,000 items took 2.7 s, so a whole
//    read took time in the square of the container's size (measured: a 100k-item verify met a
//    120 s timeout on one page). The compiled code appends in place instead.
// 6. The change feed. A GET of a container's documents with `A-IM: Incremental feed` answers, as
//    Azure's latest-version change feed does, the items written after the `If-None-Match` position
//    (an etag this server gave, "*" for now) and, with `If-Modified-Since`, at or after that time,
//    each once at its latest version, in write order; nothing new is a 304. It serves the whole
//    container's feed only: a request for part of it (a partition, a feed range) is refused (400). An item deleted is not
//    in the feed (as on Azure). The package served such a GET as a plain read of every item.
// 7. A query over the whole container whose filter fixes the partition key (`c.<key> = v`,
//    `c.<key> IN (...)`, and those joined by AND / OR) reads the partitions it names only, as Azure's
//    query plan sends it to those partitions' ranges and their index serves it: a read of the
//    counters of 20 subjects costs those subjects' items, not a scan of the container.
//
// It also counts the requests it serves, by container and kind (GET /_projectors/requests), so a
// benchmark can compare clients that do not count their own.
//
// The package keeps everything in memory. With a STATE file, the server writes its databases,
// containers and items there when it is stopped (SIGTERM, SIGINT) and reads them back at start; the
// file is removed once read, so a server that is killed instead leaves no state behind (an empty
// server, which the stack detects), never an old one that would pass for current.
//
// Usage: node cosmos_server.js HOST PORT [STATE]   (NODE_PATH: the node_modules folder holding the package)
"use strict";
const fs = require("fs");
const { AsyncLocalStorage } = require("async_hooks");
// (patched before the package's routes take the handler: a batch's operations are counted too)
const batchHandler = require("@vercel/cosmosdb-server/lib/handler/batch-documents");
const originalBatch = batchHandler.default;
batchHandler.default = async (account, req, res, params) => {
  const out = await originalBatch(account, req, res, params);
  if (Array.isArray(out)) {
    const key = params.collId;
    served[key] = served[key] || {};
    served[key].batch_items = (served[key].batch_items || 0) + out.filter(r => r.statusCode < 400).length;
  }
  return out;
};

const { createHttpServer } = require("@vercel/cosmosdb-server"); // after the patch above
const Items = require("@vercel/cosmosdb-server/lib/account/items").default;

const [host, port, stateFile] = process.argv.slice(2);
if (!host || !port) {
  console.error("usage: cosmos_server.js HOST PORT [STATE]");
  process.exit(2);
}

// the account the server creates when it listens (kept here to save and restore its state)
const accountModule = require("@vercel/cosmosdb-server/lib/account");
const OriginalAccount = accountModule.default;
let account = null;
accountModule.default = class RecordedAccount extends OriginalAccount {
  constructor(...args) {
    super(...args);
    account = this; // eslint-disable-line consistent-this
  }
};

// -- the request's partition key, seen by the container code it calls --------------------------
const request = new AsyncLocalStorage();

function partitionOf(req) {
  const header = req.headers["x-ms-documentdb-partitionkey"];
  if (!header || req.headers["x-ms-documentdb-query-enablecrosspartition"] === "true") {
    return undefined;
  }
  try {
    const value = JSON.parse(Array.isArray(header) ? header[0] : header);
    const first = Array.isArray(value) ? value[0] : value;
    return typeof first === "string" || typeof first === "number" ? first : undefined;
  } catch (err) {
    return undefined;
  }
}

// -- items indexed by partition value; expiry -----------------------------------------------------
const withTtl = new Set(); // containers holding items that may expire

function now() {
  return Math.floor(Date.now() / 1000);
}

function defaultTtl(items) {
  const parent = items._parent && items._parent.read && items._parent.read();
  if (!parent || parent.defaultTtl === undefined || parent.defaultTtl === null) {
    return null; // time to live off: nothing expires
  }
  return parent.defaultTtl;
}

function expired(items, data, at) {
  const base = defaultTtl(items);
  if (base === null || !data) return false;
  const ttl = typeof data.ttl === "number" ? data.ttl : base;
  return ttl > 0 && data._ts + ttl <= at;
}

function partitions(items) {
  if (!items._byPartition) items._byPartition = new Map();
  return items._byPartition;
}

const originalSet = Items.prototype._set;
Items.prototype._set = function set(data) {
  const out = originalSet.call(this, data);
  const key = this._getPartition(data);
  const map = partitions(this);
  let rids = map.get(key);
  if (!rids) {
    rids = new Set();
    map.set(key, rids);
  }
  rids.add(data._rid);
  if (typeof data.ttl === "number" || defaultTtl(this) > 0) withTtl.add(this);
  changed(this, data._rid);
  return out;
};

// -- the change feed: each container's items in the order of their last write ------------------
function changed(items, rid) {
  if (!items._changes) {
    items._changes = new Map(); // rid -> position of its last write, oldest write first
    items._position = 0;
  }
  items._position += 1;
  items._changes.delete(rid); // a rewritten item moves to the end
  items._changes.set(rid, items._position);
}

function feedPosition(header) {
  const raw = Array.isArray(header) ? header[0] : header;
  if (!raw) return 0;
  const text = String(raw).replace(/"/g, "");
  if (text === "*") return null; // from now
  const position = Number(text);
  return Number.isFinite(position) ? position : 0;
}

function answerJson(res, status, body) {
  res.statusCode = status;
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify(body));
}

// GET .../docs with `A-IM: Incremental feed`: the items written after If-None-Match (and at or after
// If-Modified-Since), at most x-ms-max-item-count of them; the etag is the position to go on from
function changeFeed(req, res, dbId, collId) {
  let collection = null;
  try {
    collection = account.database(dbId).collection(collId);
  } catch (err) {
    collection = null;
  }
  const parent = collection && collection.read();
  if (!parent) {
    answerJson(res, 404, { code: "NotFound", message: "Resource Not Found" });
    return;
  }
  const start = req.headers["x-ms-start-epk"];
  const end = req.headers["x-ms-end-epk"];
  const part = req.headers["x-ms-documentdb-partitionkey"] !== undefined;
  if (part || (start !== undefined && start !== "") || (end !== undefined && end.toUpperCase() !== "FF")) {
    answerJson(res, 400, { code: "BadRequest", message: "this server serves the whole container's change feed only" });
    return;
  }
  const items = collection.documents;
  const latest = items._position || 0;
  let after = feedPosition(req.headers["if-none-match"]);
  if (after === null) after = latest;
  const since = req.headers["if-modified-since"] ? Math.floor(Date.parse(req.headers["if-modified-since"]) / 1000) : null;
  const asked = parseInt(req.headers["x-ms-max-item-count"], 10);
  const limit = asked > 0 ? asked : 100;
  const at = now();
  const out = [];
  let position = after;
  for (const [rid, written] of items._changes || []) {
    if (written <= after) continue;
    const item = items._data.get(rid);
    const doc = item && item.read();
    position = written;
    if (!doc || (withTtl.has(items) && expired(items, doc, at)) || (since !== null && doc._ts < since)) continue;
    out.push({ ...doc, _lsn: written });
    if (out.length >= limit) break;
  }
  if (out.length === 0) position = Math.max(position, latest);
  res.setHeader("etag", `"${position}"`);
  res.setHeader("x-ms-item-count", String(out.length));
  res.setHeader("lsn", String(latest));
  if (out.length === 0) {
    res.statusCode = 304;
    res.end();
    return;
  }
  answerJson(res, 200, { _rid: parent._rid, Documents: out, _count: out.length });
}

function unindex(items, data) {
  const key = items._getPartition(data);
  const rids = partitions(items).get(key);
  if (rids) {
    rids.delete(data._rid);
    if (rids.size === 0) partitions(items).delete(key);
  }
  if (items._changes) items._changes.delete(data._rid); // nor is it in the change feed
}

const originalDelete = Items.prototype.delete;
Items.prototype.delete = function del(idOrRid, partition) {
  const data = this._item("/id", idOrRid, partition).read();
  originalDelete.call(this, idOrRid, partition);
  if (data) unindex(this, data);
};

// an item past its time to live is gone: removed from the container's indexes directly (what the
// package's own delete does, without its lookup, which finds items through ``_item``)
function evict(items, data) {
  const key = items._getPartition(data);
  for (const keyPath of items._uniqueKeyPaths) {
    const value = keyPath.slice(1).split("/").reduce((v, k) => (v == null ? v : v[k]), data);
    items._index.delete(items._getId(keyPath, value, key));
  }
  items._data.delete(data._rid);
  unindex(items, data);
}

// a read of an expired item finds nothing (it is evicted then, before the sweep gets to it)
const originalItem = Items.prototype._item;
Items.prototype._item = function item(keyPath, keyPathValue, partition) {
  const found = originalItem.call(this, keyPath, keyPathValue, partition);
  const data = found.read();
  if (data && withTtl.has(this) && expired(this, data, now())) {
    evict(this, data);
    return this._newItem();
  }
  return found;
};

// -- the query compiler's FROM rows, appended in place -------------------------------------------
// Every `[...$, X]` in the compiled code (the accumulator of a FROM or JOIN `reduce`, a fresh array
// per reduce) becomes `$h.appendRows($, [X])`, which pushes X's elements onto the accumulator.
const cosmosQuery = require("@zeit/cosmosdb-query");
const queryHelpers = require("@zeit/cosmosdb-query/lib/helpers");
queryHelpers.appendRows = (rows, more) => {
  for (const row of more) rows.push(row);
  return rows;
};

function closingBracket(code, open) {
  let depth = 0;
  for (let i = open; i < code.length; i += 1) {
    const ch = code[i];
    if (ch === '"' || ch === "'" || ch === "`") {
      for (i += 1; i < code.length && code[i] !== ch; i += 1) if (code[i] === "\\") i += 1;
    } else if (ch === "[" || ch === "(" || ch === "{") {
      depth += 1;
    } else if (ch === "]" || ch === ")" || ch === "}") {
      depth -= 1;
      if (depth === 0) return i;
    }
  }
  return -1;
}

function appendInPlace(code) {
  const spread = "[...$, ";
  let out = "";
  let from = 0;
  for (let at = code.indexOf(spread); at >= 0; at = code.indexOf(spread, from)) {
    const end = closingBracket(code, at);
    if (end < 0) return code; // not the shape this rewrite knows: the package's code, unchanged
    out += `${code.slice(from, at)}$h.appendRows($, [${appendInPlace(code.slice(at + spread.length, end))}])`;
    from = end + 1;
  }
  return out + code.slice(from);
}

const queryPrototype = Object.getPrototypeOf(cosmosQuery.default("SELECT * FROM c"));
const compiled = Object.getOwnPropertyDescriptor(queryPrototype, "code").get;
Object.defineProperty(queryPrototype, "code", {
  get() {
    if (this._appendInPlace === undefined) this._appendInPlace = appendInPlace(compiled.call(this));
    return this._appendInPlace;
  }
});

const originalQuery = Items.prototype.query;
const continuationToken = require("@zeit/cosmosdb-query/lib/continuation-token");

// the page of a cross-partition query after `continuation` starts at its token's item (ordered by
// `_rid` when the query has no ORDER BY): items before it are left out before the query runs
function pagedFrom(q, continuation) {
  const body = q.ast && q.ast.body;
  if (!continuation || !body || body.top || body.orderBy) return null;
  if (!/^\([^)]*\) => \{\s*return \$h\.paginate\(/.test(q.code)) return null; // aggregates are not paged
  try {
    return continuationToken.decode(continuation.token).RID;
  } catch (err) {
    return null;
  }
}

// the partition key values a query's filter confines it to (null: any partition). `c.<key> = v` and
// `c.<key> IN (v, ...)` name values (parameters or constants); AND keeps the values both sides allow,
// OR those of either side when both name some; anything else names none.
function namedPartitions(q, keyPath, parameters) {
  const body = q.ast && q.ast.body;
  const from = body && body.from && body.from.source;
  // rows that are the items themselves only (not `FROM c IN c.tags`, `FROM c.tags t`)
  if (!body || !body.where || !from || from.type !== "from_source" || from.iteration) return null;
  if (!from.expression || from.expression.type !== "collection_expression") return null;
  const root = from.alias ? from.alias.name : from.expression.expression.name;
  if (!root || keyPath.length !== 1) return null;
  const byName = new Map((parameters || []).map(p => [p.name, p.value]));
  const isKey = node => node.type === "scalar_member_expression" && !node.computed &&
    node.object.type === "identifier" && node.object.name === root && node.property.name === keyPath[0];
  const valueOf = node => {
    if (node.type === "parameter_name") return byName.get(node.name);
    if (node.type === "string_constant" || node.type === "number_constant") return node.value;
    return undefined;
  };
  const values = list => {
    const out = list.map(valueOf);
    return out.every(v => typeof v === "string" || typeof v === "number") ? new Set(out) : null;
  };
  const walk = node => {
    if (node.type === "scalar_in_expression" && isKey(node.value)) return values(node.list);
    if (node.type !== "scalar_binary_expression") return null;
    if (node.operator === "=") {
      if (isKey(node.left)) return values([node.right]);
      if (isKey(node.right)) return values([node.left]);
      return null;
    }
    const left = walk(node.left);
    const right = walk(node.right);
    if (node.operator === "AND") {
      if (left === null || right === null) return left || right;
      return new Set([...left].filter(v => right.has(v)));
    }
    if (node.operator === "OR" && left !== null && right !== null) return new Set([...left, ...right]);
    return null;
  };
  return walk(body.where.condition);
}

Items.prototype.query = function query(params, options) {
  const header = request.getStore();
  if (!this._parent.read()) return originalQuery.call(this, params, options);
  const q = this._getQuery(params.query);
  const at = now();
  const live = doc => doc && !(withTtl.has(this) && expired(this, doc, at));
  const data = [];
  const named = header !== undefined ? new Set([header]) : namedPartitions(q, this._getPartitionKeyPath(), params.parameters);
  if (named !== null && this._byPartition) {
    // (the query sorts its rows by `_rid` itself: the order gathered in does not matter)
    const from = header === undefined ? pagedFrom(q, options.continuation) : null;
    for (const partition of named) {
      for (const rid of this._byPartition.get(partition) || []) {
        const item = this._data.get(rid);
        const doc = item && item.read();
        if (live(doc) && (from === null || doc._rid >= from)) data.push(doc);
      }
    }
  } else {
    const from = pagedFrom(q, options.continuation);
    for (const item of this._data.values()) {
      const doc = item.read();
      if (live(doc) && (from === null || doc._rid >= from)) data.push(doc);
    }
  }
  const parent = this._parent.read();
  const compositeIndexes = (parent.indexingPolicy ? parent.indexingPolicy.compositeIndexes : null) || [];
  try {
    return q.exec(data, {
      parameters: params.parameters,
      udf: this._userDefinedFunctions(),
      maxItemCount: options.maxItemCount,
      continuation: options.continuation,
      compositeIndexes
    });
  } catch (err) {
    err.badRequest = true;
    throw err;
  }
};

// -- conditional patch: the predicate is evaluated on the item it patches, as written --------------
// (the package lowercased it, so `c.sourceVersion` never matched, and ran it over the container)
const patchOperations = require("@vercel/cosmosdb-server/lib/handler/_patch-operations");
const { parsePartitionKey } = require("@vercel/cosmosdb-server/lib/utils/get-partition-from-header");
const originalPatch = patchOperations.patchOperation;
const PREDICATE = /^\s*from\s+c\s+where\s+([\s\S]*)$/i;
patchOperations.patchOperation = function patchOperation(collection, input) {
  if (!input.condition) return originalPatch(collection, input);
  const data = collection.document(input.id, parsePartitionKey(input.partitionKey, input.id)).read();
  if (!data) return { statusCode: 404, body: {} };
  const match = PREDICATE.exec(input.condition);
  let holds;
  try {
    if (!match) throw new Error("a filter predicate reads FROM c WHERE <condition>");
    // `c.<field> < <integer>` (what a version guard sends, a new number each time) is compared
    // directly; anything else goes through the query engine, whose parse is cached per text
    const simple = /^\s*c\.([A-Za-z_][A-Za-z0-9_]*)\s*<\s*(-?\d+)\s*$/.exec(match[1]);
    if (simple) {
      const held = data[simple[1]];
      holds = typeof held === "number" && held < Number(simple[2]);
    } else {
      holds = collection.documents._getQuery(`SELECT * FROM c WHERE (${match[1]})`).exec([data], {}).result.length > 0;
    }
  } catch (err) {
    return { statusCode: 400, body: { code: "BadRequest", message: `Invalid condition in patch request: ${err.message}` } };
  }
  if (!holds) {
    return {
      statusCode: 412,
      body: { code: "PreconditionFailed", message: "Condition specified in the patch request is not satisfied." }
    };
  }
  return originalPatch(collection, { ...input, condition: undefined });
};

function sweep() {
  const at = now();
  for (const items of withTtl) {
    if (!items._parent.read()) {
      withTtl.delete(items); // the container was deleted
      continue;
    }
    const doomed = [];
    for (const item of items._data.values()) {
      const data = item.read();
      if (expired(items, data, at)) doomed.push(data);
    }
    for (const data of doomed) evict(items, data);
  }
}
setInterval(sweep, 1000).unref();

// -- requests served, by container and kind (GET /_projectors/requests): what the bench reads to
// compare clients that do not count their own requests ------------------------------------------
const served = {};

function kindOf(req, path) {
  const docs = /^\/dbs\/[^/]+\/colls\/([^/]+)\/docs(\/[^/]+)?\/?$/.exec(path);
  if (!docs) return [null, "metadata"];
  const [, collection, item] = docs;
  const h = req.headers;
  if (req.method === "GET" && !item && h["a-im"]) return [collection, "change_feed"];
  if (req.method === "GET") return [collection, item ? "point_read" : "read_feed"];
  if (req.method === "PATCH") return [collection, "patch"];
  if (req.method === "PUT" || req.method === "DELETE") return [collection, "point_write"];
  if (String(h["x-ms-documentdb-isquery"]).toLowerCase() === "true" || (h["content-type"] || "").startsWith("application/query+json")) {
    return [collection, h["x-ms-documentdb-partitionkey"] ? "query" : "cross_partition_query"];
  }
  if (String(h["x-ms-cosmos-is-batch-request"]).toLowerCase() === "true") return [collection, "batch"];
  return [collection, "point_write"];
}

// a request the server refused (404, 409, 412: a missing item, an existing one, a failed condition)
// is counted apart: on Azure it costs about 1 request unit whatever its kind
function count(req, res) {
  const path = decodeURIComponent((req.url || "").split("?")[0]);
  const [collection, kind] = kindOf(req, path);
  const key = collection || "(account)";
  res.on("finish", () => {
    const name = res.statusCode >= 400 && res.statusCode < 500 ? `${kind}_refused` : kind;
    served[key] = served[key] || {};
    served[key][name] = (served[key][name] || 0) + 1;
  });
}

// -- the server ----------------------------------------------------------------------------------
const server = createHttpServer({ keepAlive: true });
const handlers = server.listeners("request");
server.removeAllListeners("request");
server.on("request", (req, res) => {
  if (req.method === "GET" && req.url === "/_projectors/requests") {
    answerJson(res, 200, served);
    return;
  }
  count(req, res);
  const feed = /^\/dbs\/([^/]+)\/colls\/([^/]+)\/docs\/?$/.exec(decodeURIComponent((req.url || "").split("?")[0]));
  if (req.method === "GET" && feed && /^incremental feed$/i.test(String(req.headers["a-im"] || ""))) {
    changeFeed(req, res, feed[1], feed[2]);
    return;
  }
  request.run(partitionOf(req), () => {
    for (const handler of handlers) handler.call(server, req, res);
  });
});
// idle connections are kept longer than the client's pool keeps them busy between batches, so a
// request rarely meets a connection the server is closing
server.keepAliveTimeout = 120000;
server.headersTimeout = 125000;
// -- state kept across restarts ------------------------------------------------------------------
// Each level (databases, containers, items) is saved with its records as stored (resource ids,
// etags, timestamps kept) and its resource-id counter; expired items are left out.
function saveState(path) {
  const at = now();
  const databases = [...account.databases._data.values()].map(db => ({
    database: db.read(),
    collections: {
      ridCount: db.collections._ridCount,
      records: [...db.collections._data.values()].map(coll => ({
        collection: coll.read(),
        documents: {
          ridCount: coll.documents._ridCount,
          records: [...coll.documents._data.values()]
            .map(item => item.read())
            .filter(doc => !(withTtl.has(coll.documents) && expired(coll.documents, doc, at)))
        }
      }))
    }
  }));
  const temporary = `${path}.tmp`;
  fs.writeFileSync(temporary, JSON.stringify({ ridCount: account.databases._ridCount, databases }));
  fs.renameSync(temporary, path);
  let count = 0;
  for (const db of databases) for (const coll of db.collections.records) count += coll.documents.records.length;
  console.log(`saved ${databases.length} database(s), ${count} item(s) to ${path}`);
}

function loadState(path) {
  if (!fs.existsSync(path)) return;
  const state = JSON.parse(fs.readFileSync(path, "utf8"));
  let count = 0;
  for (const db of state.databases) {
    account.databases._set(db.database);
    const database = account.database(db.database._rid);
    for (const coll of db.collections.records) {
      database.collections._set(coll.collection);
      const collection = database.collection(coll.collection._rid);
      for (const doc of coll.documents.records) collection.documents._set(doc);
      collection.documents._ridCount = coll.documents.ridCount;
      count += coll.documents.records.length;
    }
    database.collections._ridCount = db.collections.ridCount;
  }
  account.databases._ridCount = state.ridCount;
  fs.unlinkSync(path); // read once: a server killed from now on leaves no stale state
  console.log(`loaded ${state.databases.length} database(s), ${count} item(s) from ${path}`);
}

server.listen(Number(port), host, () => {
  const address = server.address();
  if (stateFile) loadState(stateFile); // before the first request is read
  console.log(`Ready to accept HTTP connections at ${address.address}:${address.port} (keep-alive)`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    if (stateFile && account) saveState(stateFile);
    process.exit(0);
  });
}
