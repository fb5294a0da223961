module github.com/raftkv/raftkv

go 1.26
