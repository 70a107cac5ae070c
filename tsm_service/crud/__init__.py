"""Database operations of the TSM: keyword-only functions over a Session; routers never query directly."""
