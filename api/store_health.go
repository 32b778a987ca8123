package api

// SetStoreHealth makes /readyz report the shared store's state: f returns
// whether the server can take writes and a detail object shown under
// "store". Call it before serving.
func (s *Server) SetStoreHealth(f func() (ok bool, detail any)) { s.storeHealth = f }
