/**
 * The table schema as Delta stores it: Spark's JSON schema in `metaData.schemaString`.
 *
 * Primitive types are strings (`string long integer short byte float double boolean binary date timestamp
 * timestamp_ntz void variant decimal(p,s)`); nested types are objects. Field `metadata` carries column mapping,
 * invariants, generated-column expressions, identity and type-widening history, so it is preserved verbatim.
 */
import { TributaryError } from '../core/errors.js';

export interface StructType {
  type: 'struct';
  fields: StructField[];
}

export interface StructField {
  name: string;
  type: DataType;
  nullable: boolean;
  metadata: Record<string, unknown>;
}

export interface ArrayType {
  type: 'array';
  elementType: DataType;
  containsNull: boolean;
}

export interface MapType {
  type: 'map';
  keyType: DataType;
  valueType: DataType;
  valueContainsNull: boolean;
}

export type DataType = string | StructType | ArrayType | MapType;

function corrupt(message: string): TributaryError {
  return new TributaryError('DELTA_CORRUPT', `Invalid Delta schema: ${message}`, {
    hint: 'The metaData.schemaString of the table is not a valid Spark JSON schema.',
  });
}

/** A schema node as found in JSON, before validation. */
interface RawNode {
  type?: unknown;
  elementType?: unknown;
  containsNull?: unknown;
  keyType?: unknown;
  valueType?: unknown;
  valueContainsNull?: unknown;
  fields?: unknown;
  name?: unknown;
  nullable?: unknown;
  metadata?: unknown;
}

function isRecord(value: unknown): value is RawNode {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseType(raw: unknown, where: string): DataType {
  if (typeof raw === 'string') return raw;
  if (!isRecord(raw)) throw corrupt(`${where}: type must be a string or an object`);
  switch (raw.type) {
    case 'struct':
      return parseStruct(raw, where);
    case 'array':
      return {
        type: 'array',
        elementType: parseType(raw.elementType, `${where}.element`),
        containsNull: raw.containsNull !== false,
      };
    case 'map':
      return {
        type: 'map',
        keyType: parseType(raw.keyType, `${where}.key`),
        valueType: parseType(raw.valueType, `${where}.value`),
        valueContainsNull: raw.valueContainsNull !== false,
      };
    default:
      throw corrupt(`${where}: unknown nested type ${JSON.stringify(raw.type)}`);
  }
}

function parseStruct(raw: RawNode, where: string): StructType {
  const fields = raw.fields;
  if (!Array.isArray(fields)) throw corrupt(`${where}: struct without a fields array`);
  return {
    type: 'struct',
    fields: fields.map((f: unknown, i) => {
      if (!isRecord(f) || typeof f.name !== 'string') throw corrupt(`${where}: field ${i} has no name`);
      const name = f.name;
      const path = where === '' ? name : `${where}.${name}`;
      return {
        name,
        type: parseType(f.type, path),
        // Old writers omit nullable; Spark's default is nullable.
        nullable: f.nullable !== false,
        metadata: isRecord(f.metadata) ? (f.metadata as Record<string, unknown>) : {},
      };
    }),
  };
}

/** Parses `metaData.schemaString`. Throws `DELTA_CORRUPT` when it is not a Spark struct schema. */
export function parseSchema(schemaString: string): StructType {
  let raw: unknown;
  try {
    raw = JSON.parse(schemaString);
  } catch (error) {
    throw corrupt(`not JSON (${(error as Error).message})`);
  }
  if (!isRecord(raw) || raw.type !== 'struct') throw corrupt('the top level is not a struct');
  return parseStruct(raw, '');
}

function typeToJson(type: DataType): unknown {
  if (typeof type === 'string') return type;
  switch (type.type) {
    case 'struct':
      return structToJson(type);
    case 'array':
      return { type: 'array', elementType: typeToJson(type.elementType), containsNull: type.containsNull };
    case 'map':
      return {
        type: 'map',
        keyType: typeToJson(type.keyType),
        valueType: typeToJson(type.valueType),
        valueContainsNull: type.valueContainsNull,
      };
  }
}

function structToJson(struct: StructType): unknown {
  return {
    type: 'struct',
    fields: struct.fields.map((f) => ({
      name: f.name,
      type: typeToJson(f.type),
      nullable: f.nullable,
      metadata: f.metadata,
    })),
  };
}

/** Serialises a schema for `metaData.schemaString`, with keys in Spark's order so logs diff cleanly. */
export function schemaString(struct: StructType): string {
  return JSON.stringify(structToJson(struct));
}
