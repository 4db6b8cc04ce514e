// A read service that is not Python: pages a user's feed through the HTTP read API with Node's
// built-in fetch, following next_cursor to the end. Prints {"ids": [...], "pages": n}.
// Usage: node page_feed.mjs <base-url> <user-id> <limit>
const [base, user, limit] = process.argv.slice(2);
const ids = [];
let cursor = null;
let pages = 0;
do {
  const url = new URL(`/v1/users/${user}/feed`, base);
  url.searchParams.set("limit", limit);
  if (cursor !== null) url.searchParams.set("cursor", cursor);
  const answer = await fetch(url);
  if (answer.status !== 200) {
    console.error(`${url}: ${answer.status} ${await answer.text()}`);
    process.exit(1);
  }
  const body = await answer.json();
  for (const item of body.items) ids.push(item.id);
  cursor = body.next_cursor;
  pages += 1;
} while (cursor !== null);
console.log(JSON.stringify({ ids, pages }));
