// Prints the schema SDL to schema.graphql (npm run schema:print); a test fails when it drifts.
import { writeFileSync } from "node:fs";

import { printSchemaFile } from "./sdl.ts";

writeFileSync(new URL("../../../schema.graphql", import.meta.url), printSchemaFile());
console.log("wrote schema.graphql");
