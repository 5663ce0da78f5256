-- The mcsync tables as flask-mcsync made them before Alembic (40ddb8d, legacy schema
-- version 5) on SQLite, after one export of 45 addresses to the sandbox, dumped with
-- sqlite3's .dump (the shop's own tables left out). Its REAL columns say DOUBLE: the
-- models of then annotated them float.
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE mcsync_settings (
	id INTEGER NOT NULL, 
	list_id VARCHAR(64), 
	list_name VARCHAR(200), 
	double_optin BOOLEAN NOT NULL, 
	batch_size INTEGER NOT NULL, 
	auto_sync BOOLEAN NOT NULL, 
	first_export_at DATETIME, 
	webhook_secret VARCHAR(64), 
	webhook_id VARCHAR(64), 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_mcsync_settings PRIMARY KEY (id)
);
INSERT INTO mcsync_settings VALUES(1,'a1b2c3d4e5','Demo shop newsletter',0,500,1,'2026-11-27 05:12:52.595284',NULL,NULL,'2026-11-27 05:12:52.596336');
CREATE TABLE mcsync_exclusion_rules (
	id INTEGER NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	value VARCHAR(254) NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_mcsync_exclusion_rules PRIMARY KEY (id), 
	CONSTRAINT uq_mcsync_rule_kind_value UNIQUE (kind, value)
);
INSERT INTO mcsync_exclusion_rules VALUES(1,'domain','example.org','2026-11-27 05:12:20.790141');
CREATE TABLE mcsync_runs (
	id INTEGER NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	sync_reason VARCHAR(24), 
	list_id VARCHAR(64) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	active_list_id VARCHAR(64), 
	started_by VARCHAR(120) NOT NULL, 
	batch_size INTEGER NOT NULL, 
	status_if_new VARCHAR(16) NOT NULL, 
	skip_merge_validation BOOLEAN DEFAULT 0 NOT NULL, 
	planned_through VARCHAR(64), 
	planning_done BOOLEAN NOT NULL, 
	lease_until DATETIME, 
	lease_token VARCHAR(32), 
	batch_count INTEGER NOT NULL, 
	batches_done INTEGER DEFAULT '0' NOT NULL, 
	batches_failed INTEGER DEFAULT '0' NOT NULL, 
	retries INTEGER DEFAULT '0' NOT NULL, 
	most_retries INTEGER DEFAULT '0' NOT NULL, 
	retry_seconds DOUBLE DEFAULT '0' NOT NULL, 
	total INTEGER NOT NULL, 
	excluded INTEGER NOT NULL, 
	invalid INTEGER NOT NULL, 
	duplicates INTEGER NOT NULL, 
	created INTEGER NOT NULL, 
	updated INTEGER NOT NULL, 
	skipped INTEGER NOT NULL, 
	errors INTEGER NOT NULL, 
	archived INTEGER DEFAULT '0' NOT NULL, 
	confirmations INTEGER DEFAULT '0' NOT NULL, 
	message TEXT, 
	created_at DATETIME NOT NULL, 
	started_at DATETIME, 
	finished_at DATETIME, 
	CONSTRAINT pk_mcsync_runs PRIMARY KEY (id), 
	CONSTRAINT uq_mcsync_runs_active_list_id UNIQUE (active_list_id)
);
INSERT INTO mcsync_runs VALUES(1,'export',NULL,'a1b2c3d4e5','finished',NULL,'cli',500,'subscribed',0,NULL,1,NULL,NULL,0,0,0,0,0,0.0,0,0,0,0,0,0,0,0,0,0,NULL,'2026-11-27 05:12:52.448197','2026-11-27 05:12:52.550907','2026-11-27 05:12:52.590649');
INSERT INTO mcsync_runs VALUES(2,'export',NULL,'a1b2c3d4e5','finished',NULL,'cli',500,'subscribed',0,NULL,1,NULL,NULL,0,0,0,0,0,0.0,0,0,0,0,0,0,0,0,0,0,NULL,'2026-11-27 05:12:58.670864','2026-11-27 05:12:58.753537','2026-11-27 05:12:58.812666');
INSERT INTO mcsync_runs VALUES(3,'export',NULL,'a1b2c3d4e5','finished',NULL,'cli',500,'subscribed',0,'60',1,NULL,NULL,1,1,0,0,0,0.0,45,0,0,0,45,0,0,0,0,0,NULL,'2026-11-27 05:13:07.895559','2026-11-27 05:13:07.974049','2026-11-27 05:13:11.420755');
CREATE TABLE mcsync_schema (
	version INTEGER NOT NULL, 
	description VARCHAR(200) NOT NULL, 
	applied_at DATETIME NOT NULL, 
	CONSTRAINT pk_mcsync_schema PRIMARY KEY (version)
);
INSERT INTO mcsync_schema VALUES(1,'initial schema','2026-11-27 05:12:19.130015');
INSERT INTO mcsync_schema VALUES(2,'batches: re-sends and time added by retries','2026-11-27 05:12:19.130021');
INSERT INTO mcsync_schema VALUES(3,'runs: sync reason, skip_merge_validation, archived and confirmation counts','2026-11-27 05:12:19.130023');
INSERT INTO mcsync_schema VALUES(4,'both ways: webhook events, audience members, webhook settings','2026-11-27 05:12:19.130024');
INSERT INTO mcsync_schema VALUES(5,'runs: batch counters for the progress window','2026-11-27 05:12:19.130027');
CREATE TABLE mcsync_audience_members (
	email_hash VARCHAR(32) NOT NULL, 
	list_id VARCHAR(64) NOT NULL, 
	email VARCHAR(320) NOT NULL, 
	email_lower VARCHAR(320) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	merge_fields JSON, 
	contact_id VARCHAR(64), 
	changed_at DATETIME NOT NULL, 
	seen_at DATETIME NOT NULL, 
	CONSTRAINT pk_mcsync_audience_members PRIMARY KEY (email_hash)
);
CREATE TABLE mcsync_batches (
	id INTEGER NOT NULL, 
	run_id INTEGER NOT NULL, 
	seq INTEGER NOT NULL, 
	retry_of INTEGER, 
	status VARCHAR(16) NOT NULL, 
	size INTEGER NOT NULL, 
	first_address VARCHAR(254) NOT NULL, 
	last_address VARCHAR(254) NOT NULL, 
	payload JSON NOT NULL, 
	mailchimp_batch_id VARCHAR(64), 
	total_operations INTEGER NOT NULL, 
	finished_operations INTEGER NOT NULL, 
	created INTEGER NOT NULL, 
	updated INTEGER NOT NULL, 
	errors INTEGER NOT NULL, 
	archived INTEGER DEFAULT '0' NOT NULL, 
	attempts INTEGER NOT NULL, 
	poll_failures INTEGER NOT NULL, 
	resends INTEGER DEFAULT '0' NOT NULL, 
	retries INTEGER NOT NULL, 
	retry_seconds DOUBLE DEFAULT '0' NOT NULL, 
	lease_until DATETIME, 
	lease_token VARCHAR(32), 
	last_error TEXT, 
	submitted_at DATETIME, 
	started_at DATETIME, 
	finished_at DATETIME, 
	CONSTRAINT pk_mcsync_batches PRIMARY KEY (id), 
	CONSTRAINT uq_mcsync_batch_run_seq UNIQUE (run_id, seq), 
	CONSTRAINT fk_mcsync_batches_run_id_mcsync_runs FOREIGN KEY(run_id) REFERENCES mcsync_runs (id) ON DELETE CASCADE
);
INSERT INTO mcsync_batches VALUES(1,3,1,NULL,'done',45,'chloe.simon0@icloud.com','alice.roux59@gmx.de','[["chloe.simon0@icloud.com", {"FNAME": "Chlo\u00e9", "LNAME": "Simon"}, "fr"], ["chloe.durand1@sfr.fr", {"FNAME": "Chlo\u00e9", "LNAME": "Durand"}, "en"], ["jules.dupont3@protonmail.com", {"FNAME": "Jules", "LNAME": "Dupont"}, "en"], ["tom.dubois4@yahoo.fr", {"FNAME": "Tom", "LNAME": "Dubois"}, "fr"], ["zoe.girard5@hotmail.com", {"FNAME": "Zo\u00e9", "LNAME": "Girard"}, "en"], ["liam.bertrand7@gmx.de", {"FNAME": "Liam", "LNAME": "Bertrand"}, "en"], ["raphael.roux8@protonmail.com", {"FNAME": "Rapha\u00ebl", "LNAME": "Roux"}, "fr"], ["olivia.andre9@free.fr", {"FNAME": "Olivia", "LNAME": "Andr\u00e9"}, "en"], ["mia.laurent10@laposte.net", {"FNAME": "Mia", "LNAME": "Laurent"}, "fr"], ["anna.vincent11@yahoo.fr", {"FNAME": "Anna", "LNAME": "Vincent"}, "en"], ["ethan.dupont12@protonmail.com", {"FNAME": "Ethan", "LNAME": "Dupont"}, "fr"], ["jules.bertrand14@gmail.com", {"FNAME": "Jules", "LNAME": "Bertrand"}, "fr"], ["sofia.robert15@gmx.de", {"FNAME": "Sofia", "LNAME": "Robert"}, "en"], ["noah.thomas16@laposte.net", {"FNAME": "Noah", "LNAME": "Thomas"}, "fr"], ["jules.durand17@yahoo.fr", {"FNAME": "Jules", "LNAME": "Durand"}, "en"], ["arthur.girard18@icloud.com", {"FNAME": "Arthur", "LNAME": "Girard"}, "fr"], ["adam.andre20@laposte.net", {"FNAME": "Adam", "LNAME": "Andr\u00e9"}, "fr"], ["lina.bonnet21@gmail.com", {"FNAME": "Lina", "LNAME": "Bonnet"}, "en"], ["hugo.petit23@protonmail.com", {"FNAME": "Hugo", "LNAME": "Petit"}, "en"], ["sofia.bonnet24@laposte.net", {"FNAME": "Sofia", "LNAME": "Bonnet"}, "fr"], ["paul.bernard25@hotmail.com", {"FNAME": "Paul", "LNAME": "Bernard"}, "en"], ["zoe.mercier28@yahoo.fr", {"FNAME": "Zo\u00e9", "LNAME": "Mercier"}, "fr"], ["gabriel.robert30@gmail.com", {"FNAME": "Gabriel", "LNAME": "Robert"}, "fr"], ["arthur.vincent31@yahoo.fr", {"FNAME": "Arthur", "LNAME": "Vincent"}, "en"], ["alice.girard33@hotmail.com", {"FNAME": "Alice", "LNAME": "Girard"}, "en"], ["lucas.girard34@protonmail.com", {"FNAME": "Lucas", "LNAME": "Girard"}, "fr"], ["ines.roux35@sfr.fr", {"FNAME": "In\u00e8s", "LNAME": "Roux"}, "en"], ["tom.andre36@yahoo.fr", {"FNAME": "Tom", "LNAME": "Andr\u00e9"}, "fr"], ["jade.robert37@sfr.fr", {"FNAME": "Jade", "LNAME": "Robert"}, "en"], ["camille.martin41@hotmail.com", {"FNAME": "Camille", "LNAME": "Martin"}, "en"], ["nathan.fournier43@outlook.com", {"FNAME": "Nathan", "LNAME": "Fournier"}, "en"], ["louise.michel44@protonmail.com", {"FNAME": "Louise", "LNAME": "Michel"}, "fr"], ["noah.andre45@laposte.net", {"FNAME": "Noah", "LNAME": "Andr\u00e9"}, "en"], ["lea.garcia47@wanadoo.fr", {"FNAME": "L\u00e9a", "LNAME": "Garcia"}, "en"], ["mia.girard48@outlook.com", {"FNAME": "Mia", "LNAME": "Girard"}, "fr"], ["louise.lambert49@outlook.com", {"FNAME": "Louise", "LNAME": "Lambert"}, "en"], ["theo.richard50@laposte.net", {"FNAME": "Th\u00e9o", "LNAME": "Richard"}, "fr"], ["theo.dubois51@outlook.com", {"FNAME": "Th\u00e9o", "LNAME": "Dubois"}, "en"], ["alice.garcia52@laposte.net", {"FNAME": "Alice", "LNAME": "Garcia"}, "fr"], ["jade.simon53@protonmail.com", {"FNAME": "Jade", "LNAME": "Simon"}, "en"], ["emma.martin55@protonmail.com", {"FNAME": "Emma", "LNAME": "Martin"}, "en"], ["gabriel.roux56@wanadoo.fr", {"FNAME": "Gabriel", "LNAME": "Roux"}, "fr"], ["camille.laurent57@hotmail.com", {"FNAME": "Camille", "LNAME": "Laurent"}, "en"], ["nathan.lambert58@yahoo.fr", {"FNAME": "Nathan", "LNAME": "Lambert"}, "fr"], ["alice.roux59@gmx.de", {"FNAME": "Alice", "LNAME": "Roux"}, "en"]]','00012f5e04',45,45,45,0,0,0,0,0,0,0,0.0,NULL,NULL,NULL,'2026-11-27 05:13:08.057927','2026-11-27 05:13:08.055528','2026-11-27 05:13:11.412626');
CREATE TABLE mcsync_outbox (
	id INTEGER NOT NULL, 
	action VARCHAR(16) NOT NULL, 
	email VARCHAR(320) NOT NULL, 
	email_hash VARCHAR(32) NOT NULL, 
	previous_email VARCHAR(320), 
	merge_fields JSON, 
	status VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at DATETIME NOT NULL, 
	last_error TEXT, 
	run_id INTEGER, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_mcsync_outbox PRIMARY KEY (id), 
	CONSTRAINT fk_mcsync_outbox_run_id_mcsync_runs FOREIGN KEY(run_id) REFERENCES mcsync_runs (id) ON DELETE SET NULL
);
CREATE TABLE mcsync_webhook_events (
	id INTEGER NOT NULL, 
	digest VARCHAR(64) NOT NULL, 
	type VARCHAR(16) NOT NULL, 
	fired_at DATETIME, 
	email VARCHAR(320) NOT NULL, 
	email_hash VARCHAR(32) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	message TEXT, 
	payload JSON NOT NULL, 
	run_id INTEGER, 
	received_at DATETIME NOT NULL, 
	handled_at DATETIME, 
	CONSTRAINT pk_mcsync_webhook_events PRIMARY KEY (id), 
	CONSTRAINT uq_mcsync_webhook_events_digest UNIQUE (digest), 
	CONSTRAINT fk_mcsync_webhook_events_run_id_mcsync_runs FOREIGN KEY(run_id) REFERENCES mcsync_runs (id) ON DELETE SET NULL
);
CREATE TABLE mcsync_outcomes (
	id INTEGER NOT NULL, 
	run_id INTEGER NOT NULL, 
	batch_id INTEGER, 
	email VARCHAR(320) NOT NULL, 
	email_hash VARCHAR(32) NOT NULL, 
	outcome VARCHAR(16) NOT NULL, 
	permanent BOOLEAN NOT NULL, 
	error_title VARCHAR(200), 
	error_detail TEXT, 
	mailchimp_status VARCHAR(16), 
	sent JSON, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_mcsync_outcomes PRIMARY KEY (id), 
	CONSTRAINT fk_mcsync_outcomes_run_id_mcsync_runs FOREIGN KEY(run_id) REFERENCES mcsync_runs (id) ON DELETE CASCADE, 
	CONSTRAINT fk_mcsync_outcomes_batch_id_mcsync_batches FOREIGN KEY(batch_id) REFERENCES mcsync_batches (id) ON DELETE SET NULL
);
INSERT INTO mcsync_outcomes VALUES(1,3,1,'chloe.simon0@icloud.com','59702ea1e36581bb8905da6bb179d6d0','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Chlo\u00e9", "LNAME": "Simon"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(2,3,1,'chloe.durand1@sfr.fr','1ae7672ce42409f339fb90269d47ebc6','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Chlo\u00e9", "LNAME": "Durand"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(3,3,1,'jules.dupont3@protonmail.com','a25935504ee8def930b55ab747750a84','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Jules", "LNAME": "Dupont"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(4,3,1,'tom.dubois4@yahoo.fr','c137fa372863d94f2cf83c2c6709e9ab','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Tom", "LNAME": "Dubois"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(5,3,1,'zoe.girard5@hotmail.com','e0d42deb846ef8bd3abef0bb0640d072','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Zo\u00e9", "LNAME": "Girard"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(6,3,1,'liam.bertrand7@gmx.de','9582ae0cc98044d1663062b9c2a355ab','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Liam", "LNAME": "Bertrand"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(7,3,1,'raphael.roux8@protonmail.com','f461c1b181b6a48bad3efa784b9d57a2','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Rapha\u00ebl", "LNAME": "Roux"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(8,3,1,'olivia.andre9@free.fr','c1278afc12a7046341de292ba54db389','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Olivia", "LNAME": "Andr\u00e9"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(9,3,1,'mia.laurent10@laposte.net','8fde7f393c610b0f8bf24e7af859166d','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Mia", "LNAME": "Laurent"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(10,3,1,'anna.vincent11@yahoo.fr','486e6372c727127fcfce0c0a213478d7','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Anna", "LNAME": "Vincent"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(11,3,1,'ethan.dupont12@protonmail.com','d2b3518c7b745915c6360823e9df71cf','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Ethan", "LNAME": "Dupont"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(12,3,1,'jules.bertrand14@gmail.com','bf4e7fc7c4acb2d8f20b799669bf3b50','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Jules", "LNAME": "Bertrand"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(13,3,1,'sofia.robert15@gmx.de','5b9f88978db3dbbb58cb0ecc5c725474','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Sofia", "LNAME": "Robert"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(14,3,1,'noah.thomas16@laposte.net','a58961ccd63763b9aa1f305c047f1832','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Noah", "LNAME": "Thomas"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(15,3,1,'jules.durand17@yahoo.fr','fda6b1907b25ceae2f5753a8008e9231','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Jules", "LNAME": "Durand"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(16,3,1,'arthur.girard18@icloud.com','b8a6cebe976282516858afdca3e6520a','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Arthur", "LNAME": "Girard"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(17,3,1,'adam.andre20@laposte.net','2581a891193e8902f9ae4c295e5ebcc0','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Adam", "LNAME": "Andr\u00e9"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(18,3,1,'lina.bonnet21@gmail.com','210782bec9dc1e65c31710617b937dac','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Lina", "LNAME": "Bonnet"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(19,3,1,'hugo.petit23@protonmail.com','c0c71fb1f723896151f664e260df0bef','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Hugo", "LNAME": "Petit"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(20,3,1,'sofia.bonnet24@laposte.net','dd33fe1b7fb276836c78390d7d2296a7','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Sofia", "LNAME": "Bonnet"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(21,3,1,'paul.bernard25@hotmail.com','98a29ad19c64016d1bca5ee0f966daa9','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Paul", "LNAME": "Bernard"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(22,3,1,'zoe.mercier28@yahoo.fr','3d13d37a1584bcb91f14c20f68cce82d','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Zo\u00e9", "LNAME": "Mercier"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(23,3,1,'gabriel.robert30@gmail.com','55830191ec88762a2a189f4dbb3d627e','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Gabriel", "LNAME": "Robert"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(24,3,1,'arthur.vincent31@yahoo.fr','026cb4c4aa2d294b8da022a3b5e49347','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Arthur", "LNAME": "Vincent"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(25,3,1,'alice.girard33@hotmail.com','59079889dc48f6b21d1b7adc4ffdaad6','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Alice", "LNAME": "Girard"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(26,3,1,'lucas.girard34@protonmail.com','94d55560968e471e69988dcec34941af','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Lucas", "LNAME": "Girard"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(27,3,1,'ines.roux35@sfr.fr','082b655f72a2b46f9522e21674fe4dcf','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "In\u00e8s", "LNAME": "Roux"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(28,3,1,'tom.andre36@yahoo.fr','1825ff0c6820ee5e290c9bfc8641f3de','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Tom", "LNAME": "Andr\u00e9"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(29,3,1,'jade.robert37@sfr.fr','a8c7b694c741a42697da78c995bbc8cc','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Jade", "LNAME": "Robert"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(30,3,1,'camille.martin41@hotmail.com','37071bb1ad001d2c33d54f3dc9159efa','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Camille", "LNAME": "Martin"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(31,3,1,'nathan.fournier43@outlook.com','1219a16bdf86a41eddab21efe0cdf6a1','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Nathan", "LNAME": "Fournier"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(32,3,1,'louise.michel44@protonmail.com','a2216926c91ba28cf4750f20e22602c0','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Louise", "LNAME": "Michel"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(33,3,1,'noah.andre45@laposte.net','3dbc3a1ab13feb7880e70b28aba3bad1','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Noah", "LNAME": "Andr\u00e9"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(34,3,1,'lea.garcia47@wanadoo.fr','d614fa75cf98efe72378a09c9b303715','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "L\u00e9a", "LNAME": "Garcia"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(35,3,1,'mia.girard48@outlook.com','1946801d10b303aeb974661f11876e05','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Mia", "LNAME": "Girard"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(36,3,1,'louise.lambert49@outlook.com','3f5c6608df1b06d7e25fdcb95bc51b80','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Louise", "LNAME": "Lambert"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(37,3,1,'theo.richard50@laposte.net','f59bc74f7e1f84b89eeb5a575967b337','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Th\u00e9o", "LNAME": "Richard"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(38,3,1,'theo.dubois51@outlook.com','3964e74d8c617364e596454d551dec6f','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Th\u00e9o", "LNAME": "Dubois"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(39,3,1,'alice.garcia52@laposte.net','4521993c1707e40bca1fee7de8938586','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Alice", "LNAME": "Garcia"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(40,3,1,'jade.simon53@protonmail.com','f62e08f26e843bc7990aa56e41dbe4e7','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Jade", "LNAME": "Simon"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(41,3,1,'emma.martin55@protonmail.com','7fa9cfc82639a43d1da0efe80bf60216','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Emma", "LNAME": "Martin"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(42,3,1,'gabriel.roux56@wanadoo.fr','1846925168a7e661ccf0fc646e4150ff','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Gabriel", "LNAME": "Roux"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(43,3,1,'camille.laurent57@hotmail.com','e58f0c1c52db7418d44ad727f3450113','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Camille", "LNAME": "Laurent"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(44,3,1,'nathan.lambert58@yahoo.fr','15a21cb08467672141defe673683cc37','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Nathan", "LNAME": "Lambert"}, "status_if_new": "subscribed", "language": "fr"}','2026-11-27 05:13:11.406619');
INSERT INTO mcsync_outcomes VALUES(45,3,1,'alice.roux59@gmx.de','cbc9a6a32111672b15b80eacd51ee472','created',0,NULL,NULL,'subscribed','{"merge_fields": {"FNAME": "Alice", "LNAME": "Roux"}, "status_if_new": "subscribed", "language": "en"}','2026-11-27 05:13:11.406619');
CREATE INDEX ix_mcsync_runs_created_at ON mcsync_runs (created_at);
CREATE INDEX ix_mcsync_audience_members_contact ON mcsync_audience_members (contact_id);
CREATE INDEX ix_mcsync_audience_members_email_lower ON mcsync_audience_members (email_lower);
CREATE INDEX ix_mcsync_batches_status_lease ON mcsync_batches (status, lease_until);
CREATE INDEX ix_mcsync_batches_run_status_seq ON mcsync_batches (run_id, status, seq);
CREATE INDEX ix_mcsync_outbox_status_due ON mcsync_outbox (status, next_attempt_at);
CREATE INDEX ix_mcsync_outbox_hash_status ON mcsync_outbox (email_hash, status);
CREATE INDEX ix_mcsync_webhook_events_hash ON mcsync_webhook_events (email_hash);
CREATE INDEX ix_mcsync_webhook_events_status_received ON mcsync_webhook_events (status, received_at);
CREATE INDEX ix_mcsync_outcomes_created ON mcsync_outcomes (created_at);
CREATE INDEX ix_mcsync_outcomes_hash_created ON mcsync_outcomes (email_hash, created_at);
CREATE INDEX ix_mcsync_outcomes_run_outcome ON mcsync_outcomes (run_id, outcome);
CREATE INDEX ix_mcsync_outcomes_outcome_created ON mcsync_outcomes (outcome, created_at);
COMMIT;
