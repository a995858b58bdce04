// ESLint for the browser modules in src/ (`npm run lint`); types are checked by tsc (`npm run typecheck`).
import js from "@eslint/js";
import globals from "globals";

export default [
  js.configs.recommended,
  {
    files: ["src/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      // OpenSeadragon and vegaEmbed: classic scripts the viewer and run pages load before the modules.
      globals: { ...globals.browser, OpenSeadragon: "readonly", vegaEmbed: "readonly" },
    },
    rules: {
      eqeqeq: "error",
      "no-var": "error",
      "prefer-const": "error",
      "no-implicit-globals": "error",
      "no-restricted-syntax": ["error", {
        // URLs of the portal come from the page ({% url %} in data attributes), never from the scripts.
        selector: "Literal[value=/^\\/(api|static|media)\\//]",
        message: "Take the URL from the page (a data attribute written with {% url %}), not a literal.",
      }, {
        selector: "TemplateElement[value.raw=/^\\/(api|static|media)\\//]",
        message: "Take the URL from the page (a data attribute written with {% url %}), not a literal.",
      }],
    },
  },
  {
    files: ["eslint.config.mjs"],
    languageOptions: { sourceType: "module", globals: globals.node },
  },
];
