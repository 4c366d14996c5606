// ESLint (typescript-eslint, without type information: fast enough for every `npm test`).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'web-ui/dist/', 'build/', 'data/', 'scratch/', 'models/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        URL: 'readonly',
        fetch: 'readonly',
        AbortSignal: 'readonly',
      },
    },
    rules: {
      // Names starting with _ are left out on purpose (destructuring a field away).
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          caughtErrors: 'none',
        },
      ],
      'no-empty': ['error', { allowEmptyCatch: true }],
      // A variable a closure reads before its one assignment (a server's handler and the server) stays let.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // A failed bus call must be said, not swallowed: .catch(() => undefined) on broker.call hides it.
      'no-restricted-syntax': [
        'error',
        {
          selector:
            "CallExpression[callee.property.name='catch'][callee.object.callee.property.name='call'] > ArrowFunctionExpression[params.length=0]",
          message:
            "A bus call's failure is swallowed here: use unlessRefused (lib/refusals.ts) or log why it may fail quietly.",
        },
      ],
    },
  },
  // The app's service worker is plain JavaScript run by the browser, with a worker's globals.
  {
    files: ['web-ui/public/sw.js'],
    languageOptions: {
      globals: { self: 'readonly', caches: 'readonly', Response: 'readonly', MessageChannel: 'readonly' },
    },
  },
  // Tests read JSON answers of any shape; USP messages are protobuf objects decoded without a schema type.
  { files: ['test/**', 'lib/usp/**', 'services/usp/**'], rules: { '@typescript-eslint/no-explicit-any': 'off' } },
);
