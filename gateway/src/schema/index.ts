import "./orders.ts";
import "./messages.ts";
import "./publishing.ts";
import "./endput.ts";
import "./events.ts";
import "./stats.ts";
import "./dead-letters.ts";

import { builder } from "./builder.ts";

export const schema = builder.toSchema({ sortSchema: false });
