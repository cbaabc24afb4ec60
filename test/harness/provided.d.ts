// An import makes this file a module, so the declaration below augments vitest's types instead of replacing them.
import 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Root access to the MariaDB that the integration global setup started or found. */
    mysql: { host: string; port: number; user: string; password: string };
    /** Superuser access to the PostgreSQL that the integration global setup started or found. */
    postgres: { host: string; port: number; user: string; password: string };
  }
}
