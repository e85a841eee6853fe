package web

import "embed"

// Files is the page's assets, under static/.
//
//go:embed static
var Files embed.FS
