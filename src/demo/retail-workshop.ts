/**
 * The retail workshop of the reference documents: its three tables, generated data, its insert/update/delete
 * scenario and its validation queries, verbatim. Shared by `npm run demo` and the integration tests, so the
 * demo users run is the one CI proves. The source may be MariaDB/MySQL or PostgreSQL; only the DDL's
 * DATETIME (PostgreSQL: TIMESTAMP) and the placeholders differ.
 */

import type { Connection } from 'mysql2/promise';
import type pg from 'pg';

/** What the workshop needs of a source database connection. */
export interface RetailDatabase {
  readonly dialect: 'mysql' | 'postgresql';
  /** Runs one statement with positional parameters (`?`), returning its rows. */
  query(sql: string, params?: readonly unknown[]): Promise<Record<string, unknown>[]>;
}

export function mysqlRetailDatabase(conn: Connection): RetailDatabase {
  return {
    dialect: 'mysql',
    async query(sql, params = []) {
      const [rows] = await conn.query(sql, [...params]);
      return Array.isArray(rows) ? (rows as Record<string, unknown>[]) : [];
    },
  };
}

export function postgresRetailDatabase(client: pg.Client): RetailDatabase {
  return {
    dialect: 'postgresql',
    async query(sql, params = []) {
      let n = 0;
      const result = await client.query(
        sql.replace(/\?/g, () => `$${++n}`),
        [...params],
      );
      return result.rows as Record<string, unknown>[];
    },
  };
}

export function retailDdl(dialect: RetailDatabase['dialect']): string[] {
  return dialect === 'mysql' ? RETAIL_DDL : RETAIL_DDL.map((ddl) => ddl.replaceAll('DATETIME', 'TIMESTAMP'));
}

const RETAIL_DDL = [
  `CREATE TABLE customers (
    customer_id INT PRIMARY KEY,
    first_name VARCHAR(50),
    last_name VARCHAR(50),
    email VARCHAR(100),
    phone VARCHAR(20),
    address VARCHAR(200),
    city VARCHAR(50),
    state VARCHAR(2),
    zip_code VARCHAR(10),
    created_date DATETIME,
    last_updated DATETIME
  )`,
  `CREATE TABLE orders (
    order_id INT PRIMARY KEY,
    customer_id INT,
    order_date DATETIME,
    order_status VARCHAR(20),
    total_amount DECIMAL(10, 2),
    shipping_address VARCHAR(200),
    payment_method VARCHAR(50),
    created_date DATETIME,
    last_updated DATETIME,
    FOREIGN KEY (customer_id) REFERENCES customers(customer_id)
  )`,
  `CREATE TABLE products (
    product_id INT PRIMARY KEY,
    product_name VARCHAR(100),
    category VARCHAR(50),
    price DECIMAL(10, 2),
    stock_quantity INT,
    supplier VARCHAR(100),
    description TEXT,
    created_date DATETIME,
    last_updated DATETIME
  )`,
];

export interface RetailSizes {
  readonly customers: number;
  readonly orders: number;
  readonly products: number;
}

/** The workshop's sizes: about 1,000 customers, 5,000 orders and 200 products. */
export const WORKSHOP_SIZES: RetailSizes = { customers: 1000, orders: 5000, products: 200 };

const FIRST = ['Ana', 'Ben', 'Chloé', 'Dev', 'Eva', 'Femi', 'Gus', 'Hana', 'Ivo', 'Jun', 'Kai', 'Lena'];
const LAST = ['Nguyen', 'García', 'Okafor', 'Schmidt', 'Kowalski', 'Tanaka', 'Silva', 'Haddad', "O'Neil"];
const CITIES: Array<[string, string]> = [
  ['Seattle', 'WA'],
  ['Austin', 'TX'],
  ['Denver', 'CO'],
  ['Boston', 'MA'],
  ['Miami', 'FL'],
];
const STATUSES = ['PENDING', 'PROCESSING', 'SHIPPED', 'DELIVERED'];
const CATEGORIES = ['Garden', 'Kitchen', 'Toys', 'Books', 'Outdoor'];

/** Deterministic pseudo-random numbers, so every run generates the same data. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function at(i: number): string {
  const d = new Date(Date.UTC(2024, 0, 1) + i * 3_600_000 + (i % 1000) * 1000);
  return d.toISOString().slice(0, 19).replace('T', ' ');
}

/** Customer ids are 1..n-1 plus 9999, so the workshop's DELETE has a row to remove. */
export function customerIds(n: number): number[] {
  return [...Array.from({ length: n - 1 }, (_, i) => i + 1), 9999];
}

/** Order ids start at 1001 so that order 5001, which the workshop updates, exists. */
export function orderIds(n: number): number[] {
  return Array.from({ length: n }, (_, i) => 1001 + i);
}

/** Product ids are 1001.. plus 2001, which the workshop re-prices. */
export function productIds(n: number): number[] {
  return [...Array.from({ length: n - 1 }, (_, i) => 1001 + i), 2001];
}

async function insertAll(conn: RetailDatabase, table: string, rows: unknown[][]): Promise<void> {
  for (let i = 0; i < rows.length; i += 1000) {
    const chunk = rows.slice(i, i + 1000);
    const tuples = chunk.map((row) => `(${row.map(() => '?').join(', ')})`).join(', ');
    await conn.query(`INSERT INTO ${table} VALUES ${tuples}`, chunk.flat());
  }
}

export async function createRetailSchema(
  conn: RetailDatabase,
  sizes: RetailSizes = WORKSHOP_SIZES,
): Promise<void> {
  for (const ddl of retailDdl(conn.dialect)) await conn.query(ddl);
  const rand = prng(42);
  const customers = customerIds(sizes.customers);
  await insertAll(
    conn,
    'customers',
    customers.map((id, i) => {
      const first = FIRST[i % FIRST.length] as string;
      const last = LAST[(i * 7) % LAST.length] as string;
      const [city, state] = CITIES[i % CITIES.length] as [string, string];
      return [
        id,
        first,
        last,
        `${first}.${last}.${id}@example.com`.toLowerCase(),
        `555-${String(1000 + (id % 9000)).padStart(4, '0')}`,
        `${100 + i} Main St`,
        city,
        state,
        String(10000 + i),
        at(i),
        null,
      ];
    }),
  );
  const products = productIds(sizes.products);
  await insertAll(
    conn,
    'products',
    products.map((id, i) => [
      id,
      `Product ${id}`,
      CATEGORIES[i % CATEGORIES.length],
      (1 + Math.floor(rand() * 50000) / 100).toFixed(2),
      Math.floor(rand() * 500),
      `Supplier ${i % 13}`,
      `A fine product, number ${id}.`,
      at(i),
      null,
    ]),
  );
  await insertAll(
    conn,
    'orders',
    orderIds(sizes.orders).map((id, i) => {
      // Customer 9999 has orders too, so deleting it exercises the foreign key; order 5001 is not one of them.
      const customer =
        id % 97 === 0 && id !== 5001 ? 9999 : (customers[i % (customers.length - 1)] as number);
      return [
        id,
        customer,
        at(i),
        STATUSES[i % STATUSES.length],
        (5 + Math.floor(rand() * 100000) / 100).toFixed(2),
        `${200 + i} Market St`,
        i % 2 === 0 ? 'credit_card' : 'paypal',
        at(i),
        null,
      ];
    }),
  );
}

/**
 * The workshop's insert/update/delete scenario (Lab 5), in MariaDB's dialect (NOW() for GETDATE()). The
 * orders of customer 9999 are deleted first so the foreign key holds, as the workshop's note on referential
 * integrity asks.
 */
export const WORKSHOP_SCENARIO = [
  `INSERT INTO customers (customer_id, first_name, last_name, email, phone, city, state, created_date)
   VALUES (10001, 'Jane', 'Smith', 'jane.smith@email.com', '555-0123', 'Seattle', 'WA', NOW())`,
  `UPDATE orders SET order_status = 'SHIPPED', last_updated = NOW() WHERE order_id = 5001`,
  `UPDATE products SET price = 29.99, last_updated = NOW() WHERE product_id = 2001`,
  'DELETE FROM orders WHERE customer_id = 9999',
  'DELETE FROM customers WHERE customer_id = 9999',
];

export async function runWorkshopScenario(conn: RetailDatabase): Promise<void> {
  for (const sql of WORKSHOP_SCENARIO) await conn.query(sql);
}

export interface SourceCounts {
  readonly customers: number;
  readonly orders: number;
  readonly products: number;
}

/** Row counts of the workshop tables in the connection's current database (MySQL: its default database). */
export async function sourceCounts(conn: RetailDatabase): Promise<SourceCounts> {
  const rows = await conn.query(
    `SELECT (SELECT COUNT(*) FROM customers) AS customers,
            (SELECT COUNT(*) FROM orders) AS orders,
            (SELECT COUNT(*) FROM products) AS products`,
  );
  const r = rows[0] ?? {};
  return { customers: Number(r['customers']), orders: Number(r['orders']), products: Number(r['products']) };
}

export interface Validation {
  readonly title: string;
  /** Verbatim from the workshop (001) or its production checklist (000). */
  readonly sql: string;
  /** Null when the result is what the workshop expects, else what is wrong. */
  check(rows: readonly Record<string, unknown>[], source: SourceCounts): string | null;
}

const one = (rows: readonly Record<string, unknown>[]) =>
  rows.length === 1 ? (rows[0] as Record<string, unknown>) : undefined;

export const WORKSHOP_VALIDATIONS: readonly Validation[] = [
  {
    title: 'Verify record counts after initial snapshot',
    sql: `SELECT 'customers' as table_name, COUNT(*) as record_count FROM bronze.customers
UNION ALL
SELECT 'orders', COUNT(*) FROM bronze.orders
UNION ALL
SELECT 'products', COUNT(*) FROM bronze.products;`,
    check(rows, source) {
      const got = Object.fromEntries(rows.map((r) => [String(r['table_name']), Number(r['record_count'])]));
      const want = { customers: source.customers, orders: source.orders, products: source.products };
      return JSON.stringify(got) === JSON.stringify(want)
        ? null
        : `expected ${JSON.stringify(want)} (the source), got ${JSON.stringify(got)}`;
    },
  },
  {
    title: 'Validate INSERT operation - verify new customer exists',
    sql: `SELECT * FROM bronze.customers 
WHERE customer_id = 10001;`,
    check(rows) {
      const r = one(rows);
      return r &&
        r['first_name'] === 'Jane' &&
        r['last_name'] === 'Smith' &&
        r['email'] === 'jane.smith@email.com'
        ? null
        : `expected one row for Jane Smith, got ${JSON.stringify(rows)}`;
    },
  },
  {
    title: 'Validate UPDATE operation - check order status change',
    sql: `SELECT order_id, order_status, last_updated, _commit_timestamp
FROM bronze.orders 
WHERE order_id = 5001
ORDER BY _commit_timestamp DESC;`,
    check(rows) {
      const r = one(rows);
      return r && r['order_status'] === 'SHIPPED' && r['last_updated'] !== null
        ? null
        : `expected order 5001 SHIPPED, got ${JSON.stringify(rows)}`;
    },
  },
  {
    title: 'Validate UPDATE operation - check product price change',
    sql: `SELECT product_id, product_name, price, _commit_timestamp
FROM bronze.products 
WHERE product_id = 2001
ORDER BY _commit_timestamp DESC;`,
    check(rows) {
      const r = one(rows);
      return r && String(r['price']) === '29.99'
        ? null
        : `expected product 2001 at 29.99, got ${JSON.stringify(rows)}`;
    },
  },
  {
    title: 'Confirm DELETE operation - should return no records',
    sql: `SELECT * FROM bronze.customers 
WHERE customer_id = 9999;`,
    check: (rows) => (rows.length === 0 ? null : `expected no rows, got ${rows.length}`),
  },
  {
    title: 'Referential Integrity Verified - no orphaned orders',
    sql: `SELECT COUNT(*) FROM retail_analytics.bronze.orders o
LEFT JOIN retail_analytics.bronze.customers c ON o.customer_id = c.customer_id
WHERE c.customer_id IS NULL;`,
    check(rows) {
      const v = Object.values(one(rows) ?? {})[0];
      return Number(v) === 0 ? null : `expected 0 orphaned orders, got ${String(v)}`;
    },
  },
  {
    title: 'Check staging volume contents',
    sql: `LIST 'dbfs:/Volumes/retail_analytics/landing/ingestion_volume/';`,
    check(rows) {
      // One directory per gateway, holding its sealed segments.
      return rows.length > 0 && rows.every((r) => String(r['name']).endsWith('/'))
        ? null
        : `expected the gateways' staging directories, got ${JSON.stringify(rows)}`;
    },
  },
  {
    title: 'CDC Metadata Populated - _commit_timestamp must be present',
    sql: `SELECT COUNT(*) FROM retail_analytics.bronze.customers
WHERE _commit_timestamp IS NULL;`,
    check(rows) {
      const v = Object.values(one(rows) ?? {})[0];
      return Number(v) === 0 ? null : `expected 0 rows without _commit_timestamp, got ${String(v)}`;
    },
  },
];
