-- Analysts may read the tus uploads table (0012 predates the analyst roles of 0015): it
-- holds no personal data, and abandoned/expired uploads are an operational question.
SELECT chronicle_analyst_readable('uploads'::regclass);
