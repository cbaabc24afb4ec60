import { existsSync } from 'node:fs';
import { type Connection, createConnection, type RowDataPacket } from 'mysql2/promise';
import { describe, expect, inject, test } from 'vitest';
import { startMariaDb } from '../../src/testing/mariadb-server.js';
import { adminConnection, freshDatabase } from '../harness/mysql.js';

interface VariableRow extends RowDataPacket {
  Value: string;
}

async function variable(conn: Connection, name: string): Promise<string | undefined> {
  const [rows] = await conn.query<VariableRow[]>('SHOW VARIABLES LIKE ?', [name]);
  return rows[0]?.Value;
}

describe('the provided server', () => {
  test('accepts connections and is configured for row-based CDC', async () => {
    const conn = await adminConnection();
    try {
      expect(await variable(conn, 'binlog_format')).toBe('ROW');
      expect(await variable(conn, 'log_bin')).toBe('ON');
      expect(await variable(conn, 'binlog_row_image')).toBe('FULL');
    } finally {
      await conn.end();
    }
  });

  test('gives each caller its own database, dropped afterwards', async () => {
    const db = await freshDatabase('harness');
    await db.conn.query('CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(10)); INSERT INTO t VALUES (1, ?)', [
      '🌊',
    ]);
    const [rows] = await db.conn.query<RowDataPacket[]>('SELECT s FROM t');
    expect(rows).toEqual([{ s: '🌊' }]);
    await db.drop();

    const conn = await adminConnection();
    try {
      const [found] = await conn.query<RowDataPacket[]>('SHOW DATABASES LIKE ?', [db.name]);
      expect(found).toEqual([]);
    } finally {
      await conn.end();
    }
  });
});

describe('startMariaDb', () => {
  test('survives kill() and restart() with its data, and stop() removes its directory', async () => {
    const provided = inject('mysql');
    const server = await startMariaDb({ serverId: 102 });
    const connect = () =>
      createConnection({
        host: server.host,
        port: server.port,
        user: server.rootUser,
        password: server.rootPassword,
        charset: 'utf8mb4',
      });
    try {
      expect(server.port).not.toBe(provided.port);
      expect(JSON.stringify(server)).not.toContain(server.rootPassword);

      const before = await connect();
      await before.query('CREATE DATABASE crash');
      await before.query('CREATE TABLE crash.t (id INT PRIMARY KEY, v VARCHAR(20))');
      await before.query("INSERT INTO crash.t VALUES (1, 'committed'), (2, 'also')");
      await before.end();

      await server.kill();
      await expect(connect()).rejects.toThrow();

      await server.restart();
      const after = await connect();
      const [rows] = await after.query<RowDataPacket[]>('SELECT id, v FROM crash.t ORDER BY id');
      expect(rows).toEqual([
        { id: 1, v: 'committed' },
        { id: 2, v: 'also' },
      ]);
      expect(await variable(after, 'server_id')).toBe('102');
      await after.end();

      // A restart of a running server is a graceful one.
      await server.restart();
      const again = await connect();
      await again.end();
    } finally {
      await server.stop();
    }
    const { TRIBUTARY_KEEP_SERVERS } = process.env;
    expect(existsSync(server.baseDir)).toBe(TRIBUTARY_KEEP_SERVERS === '1');
    await expect(server.restart()).rejects.toThrow(/stopped/);
  });
});
