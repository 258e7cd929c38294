/*! candor-lint.js: placeholder */
