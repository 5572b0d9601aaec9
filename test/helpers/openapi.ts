import path from 'node:path';
import { Ajv2020, type Options } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

/** The committed document, openapi/openapi.json. */
export const DOCUMENT_PATH = path.join(import.meta.dirname, '..', '..', 'openapi', 'openapi.json');

/**
 * An Ajv for the document's schemas (OpenAPI 3.1 schemas are JSON Schema 2020-12): formats
 * checked, every error reported, keywords Ajv does not know (`example`...) ignored. `opts` add to
 * these (openapi-backend passes its own); they cannot turn `strict` or `allErrors` back.
 */
export function documentAjv(opts: Options = {}) {
  return addFormats.default(new Ajv2020({ ...opts, strict: false, allErrors: true }));
}
