// Package httpapi is the REST history API (/history/v1/...) as a chi http.Handler: parameter
// parsing, JSON and CSV encoding, error-to-status translation. Package cmd decides where it is
// mounted. The history API itself is built in a later change; this package is its home.
package httpapi
