package layers

// UseWalkResolver makes s resolve paths component by component with
// O_NOFOLLOW, as on kernels without openat2, so tests cover both paths.
func UseWalkResolver(s *Store) { s.res.walk = true }
