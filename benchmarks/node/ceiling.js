// The broker's per-message ceiling: persistent messages through a durable topic
// exchange to a durable queue, publisher confirms (up to WINDOW unconfirmed),
// consumer prefetch PREFETCH with acks batched by ACK_EVERY (multiple=true).
// Usage: node ceiling.js <amqp-url> <count> <body-hex>; prints {"rate": msgs/s}.
"use strict";
const amqp = require("amqplib");
const crypto = require("crypto");

const WINDOW = 1000;
const PREFETCH = 1000;
const ACK_EVERY = 100;
const ROUTING_KEY = "bench.tick";

async function main() {
  const [url, countText, bodyHex] = process.argv.slice(2);
  const count = Number(countText);
  const body = Buffer.from(bodyHex, "hex");
  const suffix = crypto.randomBytes(6).toString("hex");
  const exchange = `bench.x.node.${suffix}`;
  const queue = `bench.q.node.${suffix}`;
  const connection = await amqp.connect(url);
  try {
    const publisher = await connection.createConfirmChannel();
    await publisher.assertExchange(exchange, "topic", { durable: true });
    await publisher.assertQueue(queue, { durable: true });
    await publisher.bindQueue(queue, exchange, ROUTING_KEY);
    const consumer = await connection.createChannel();
    await consumer.prefetch(PREFETCH);
    let received = 0;
    const finished = new Promise((resolve) => {
      consumer.consume(queue, (message) => {
        received += 1;
        if (received % ACK_EVERY === 0 || received === count) {
          consumer.ack(message, true);
        }
        if (received === count) resolve(process.hrtime.bigint());
      });
    });
    const start = process.hrtime.bigint();
    let inFlight = 0;
    let wake = null;
    for (let i = 0; i < count; i++) {
      while (inFlight >= WINDOW) {
        await new Promise((resolve) => (wake = resolve));
      }
      inFlight += 1;
      const ok = publisher.publish(
        exchange,
        ROUTING_KEY,
        body,
        { persistent: true, contentType: "application/msgpack", type: ROUTING_KEY },
        (error) => {
          if (error) throw error;
          inFlight -= 1;
          if (wake) {
            const w = wake;
            wake = null;
            w();
          }
        },
      );
      if (!ok) await new Promise((resolve) => publisher.once("drain", resolve));
    }
    const end = await finished;
    const seconds = Number(end - start) / 1e9;
    console.log(JSON.stringify({ rate: count / seconds }));
    await publisher.deleteQueue(queue);
    await publisher.deleteExchange(exchange);
  } finally {
    await connection.close();
  }
}

main().catch((error) => {
  console.error(String((error && error.stack) || error));
  process.exit(1);
});
