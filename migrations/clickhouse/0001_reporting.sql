-- The reporting database; its tables are created by the view service, which detects the server's features.
CREATE DATABASE IF NOT EXISTS reporting;
