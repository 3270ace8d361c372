import js from "@eslint/js";
import simpleImportSort from "eslint-plugin-simple-import-sort";
import tseslint from "typescript-eslint";

export default tseslint.config(
  {
    ignores: [
      "node_modules/",
      ".local/",
      "common/prisma/source/",
      "common/prisma/endput/",
      "gateway/dashboard/dist/",
      "test-output/",
      "bench/results/",
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    plugins: { "simple-import-sort": simpleImportSort },
    rules: {
      "simple-import-sort/imports": "error",
      "simple-import-sort/exports": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-non-null-assertion": "off",
      "no-restricted-properties": [
        "error",
        { object: "process", property: "env", message: "Read settings through common/config.ts." },
        { object: "describe", property: "only", message: "No focused tests." },
        { object: "it", property: "only", message: "No focused tests." },
        { object: "test", property: "only", message: "No focused tests." },
      ],
      "no-restricted-imports": [
        "error",
        {
          paths: ["process", "node:process"].map((name) => ({
            name,
            importNames: ["env", "default"],
            message: "Read settings through common/config.ts.",
          })),
        },
      ],
    },
  },
  {
    // The configuration module is the one place that reads the environment: it also builds
    // the environments of child processes (childEnvironment) and reads the Prisma CLI's and
    // the bench's variables.
    files: ["common/config.ts"],
    rules: { "no-restricted-properties": "off", "no-restricted-imports": "off" },
  },
);
