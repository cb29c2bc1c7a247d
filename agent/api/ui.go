package api

import (
	"embed"
	"io/fs"
	"net/http"
)

// uiFiles is the dashboard: static HTML, CSS and JavaScript that read the
// JSON API. No template is executed and nothing is fetched from elsewhere.
//
//go:embed ui
var uiFiles embed.FS

// newUIHandler serves the embedded files, index.html at "/".
func newUIHandler() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree always has ui/
	}
	return http.FileServerFS(sub)
}

// ui serves the dashboard's files. They hold no data, so they are served
// without the token; the page asks for it when the API answers 401.
func (s *Server) ui(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
	s.uiFiles.ServeHTTP(w, r)
}
