import { builder } from "./builder.ts";
import "./orders.ts";
import "./messages.ts";
import "./publishing.ts";
import "./endput.ts";
import "./events.ts";

export const schema = builder.toSchema({ sortSchema: false });
